"""Export schedules and their run history: adding, listing and removing schedules, for the CLI, API and dashboard."""

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func
from sqlmodel import Session, select

from tally.analytics.export_datasets import DATASETS
from tally.analytics.export_periods import cron_trigger, granularity
from tally.store.models import App, ExportRun, ExportSchedule

DEFAULT_DIRECTORY = "exports"  # relative to the data directory
RUN_FIELDS = ("id", "schedule_id", "period", "period_start", "period_end", "started_at", "finished_at", "status",
              "rows", "bytes", "file", "error")


class ScheduleError(ValueError):
    """A schedule that cannot be added as asked; `field` names the offending option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def add_schedule(db: Session, *, dataset: str, cron: str, timezone_name: str, app_id: int | None = None,
                 directory: str | None = None, include_raw: bool = False, data_dir: Path, confined: bool,
                 now_ms: int) -> ExportSchedule:
    """Validates and adds a schedule. `confined` keeps its folder inside the data directory, as the API must:
    a read token should not let its holder make the server write anywhere else."""
    if dataset not in DATASETS:
        raise ScheduleError("dataset", f"unknown dataset {dataset!r}; use one of: {', '.join(DATASETS)}")
    if include_raw and not DATASETS[dataset].raw_columns:
        raise ScheduleError("include_raw", f"{dataset} has no raw JSON; only interactions do")
    zone = _zone(timezone_name)
    cron = " ".join(cron.split())
    try:
        cron_trigger(cron, zone)
    except ValueError as error:
        raise ScheduleError("cron", str(error)) from None
    if app_id is not None and db.get(App, app_id) is None:
        raise ScheduleError("app", f"no app with id {app_id}")
    schedule = ExportSchedule(dataset=dataset, cron=cron, timezone=zone.key, app_id=app_id, include_raw=include_raw,
                              directory=_directory(directory, data_dir=data_dir, confined=confined), created_at=now_ms)
    db.add(schedule)
    db.flush()
    return schedule


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("timezone", f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def _directory(text: str | None, *, data_dir: Path, confined: bool) -> str:
    text = (text or "").strip() or DEFAULT_DIRECTORY
    if "\0" in text:
        raise ScheduleError("directory", "a folder name cannot hold a NUL character")
    if confined and not (data_dir / text).resolve().is_relative_to(data_dir.resolve()):
        raise ScheduleError("directory", "must be inside the data directory (the command line can choose any folder)")
    return text


def export_folder(schedule: ExportSchedule, data_dir: Path) -> Path:
    return data_dir / schedule.directory  # an absolute directory replaces data_dir


def remove_schedule(db: Session, *, schedule_id: int) -> bool:
    """Removes a schedule and its run history (the files it wrote stay); False if there was none."""
    schedule = db.get(ExportSchedule, schedule_id)
    if schedule is None:
        return False
    db.exec(delete(ExportRun).where(ExportRun.schedule_id == schedule_id))
    db.delete(schedule)
    db.flush()
    return True


def list_schedules(db: Session, *, now: datetime | None = None) -> list[dict]:
    """Every schedule, oldest first, with its app's name, period unit, next run time and last run."""
    now = now or datetime.now(timezone.utc)
    rows = db.exec(select(ExportSchedule, App.name).join(App, App.id == ExportSchedule.app_id, isouter=True)
                   .order_by(ExportSchedule.id)).all()
    latest = (select(ExportRun.schedule_id, func.max(ExportRun.id).label("id"))
              .group_by(ExportRun.schedule_id).subquery())
    last_runs = {run.schedule_id: run_dict(run)
                 for run in db.exec(select(ExportRun).join(latest, latest.c.id == ExportRun.id))}
    return [schedule_dict(schedule, app_name, now=now, last_run=last_runs.get(schedule.id))
            for schedule, app_name in rows]


def schedule_dict(schedule: ExportSchedule, app_name: str | None, *, now: datetime,
                  last_run: dict | None = None) -> dict:
    next_run = cron_trigger(schedule.cron, ZoneInfo(schedule.timezone)).get_next_fire_time(None, now)
    return {"id": schedule.id, "dataset": schedule.dataset, "cron": schedule.cron, "timezone": schedule.timezone,
            "app_id": schedule.app_id, "app": app_name, "directory": schedule.directory,
            "include_raw": schedule.include_raw, "period": granularity(schedule.cron),
            "created_at": schedule.created_at,
            "next_run_at": round(next_run.timestamp() * 1000) if next_run is not None else None,
            "last_run": last_run}


def recent_runs(db: Session, *, schedule_id: int | None = None, limit: int = 50) -> list[dict]:
    """The latest runs, newest first, of one schedule or of all."""
    query = select(ExportRun).order_by(ExportRun.started_at.desc(), ExportRun.id.desc()).limit(limit)
    if schedule_id is not None:
        query = query.where(ExportRun.schedule_id == schedule_id)
    return [run_dict(run) for run in db.exec(query)]


def run_dict(run: ExportRun) -> dict:
    return {name: getattr(run, name) for name in RUN_FIELDS}


def fail_interrupted_runs(db: Session, *, now_ms: int) -> int:
    """Runs still `running` when a server starts were cut short by a stop or a crash: they failed."""
    runs = db.exec(select(ExportRun).where(ExportRun.status == "running")).all()
    for run in runs:
        run.status, run.finished_at = "failed", now_ms
        run.error = "interrupted: the server stopped during the run"
    db.flush()
    return len(runs)
