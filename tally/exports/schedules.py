"""Export schedules and their run history: adding, listing and removing schedules, for the CLI, API and dashboard."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from tally.exports.datasets import DATASETS
from tally.exports.periods import cron_trigger, granularity
from tally.store import audit
from tally.store.app_access import AppIds, sees, visible
from tally.store.engine import serialise
from tally.store.models import App, ExportRun, ExportSchedule, id_of
from tally.store.settings import Settings

DEFAULT_DIRECTORY = "."  # the exports folder itself
FIRES_CHECKED = 200  # a crontab's shortest gap is looked for among this many fires from now
CRON_MAX_CHARS = ExportSchedule.model_fields["cron"].metadata[0].max_length
RUN_FIELDS = ("id", "schedule_id", "period", "period_start", "period_end", "started_at", "finished_at", "status",
              "rows", "bytes", "file", "error", "replica")


class ScheduleError(ValueError):
    """A schedule that cannot be added as asked; `field` names the offending option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ScheduleLimits:
    """What one API token or dashboard account may schedule; the command line is not limited."""

    per_creator: int
    min_interval_ms: int

    @classmethod
    def of(cls, settings: Settings) -> "ScheduleLimits":
        return cls(settings.export_schedules_max, round(settings.export_min_interval_minutes * 60_000))


def add_schedule(db: Session, *, dataset: str, cron: str, timezone_name: str, app_id: int | None = None,
                 directory: str | None = None, include_raw: bool = False, exports_dir: Path, now_ms: int, actor: str,
                 address: str | None = None, limits: ScheduleLimits | None = None, apps: AppIds) -> ExportSchedule:
    """Validates and adds a schedule, due at its crontab's first fire after `now_ms`, and records who added it
    (`actor`, from `address`) in the audit trail. With `limits` (the API's and the dashboard's), its folder must
    lie inside the exports folder (a token must not let its holder make the server write anywhere else), its
    crontab may not fire more often than the limit allows, and its maker may hold only so many schedules. A maker
    limited to `apps` schedules one of those apps only."""
    if dataset not in DATASETS:
        raise ScheduleError("dataset", f"unknown dataset {dataset!r}; use one of: {', '.join(DATASETS)}")
    if include_raw and not DATASETS[dataset].raw_columns:
        raise ScheduleError("include_raw", f"{dataset} has no raw JSON; only interactions do")
    zone = _zone(timezone_name)
    cron = " ".join(cron.split())
    if len(cron) > CRON_MAX_CHARS:
        raise ScheduleError("cron", f"must be at most {CRON_MAX_CHARS} characters")
    try:
        first = next_fire(cron_trigger(cron, zone), after_ms=now_ms)
    except ValueError as error:
        raise ScheduleError("cron", str(error)) from None
    if first is None:
        raise ScheduleError("cron", "never fires (no such date): check the day and the month")
    if limits is not None:
        _within(db, limits, cron_trigger(cron, zone), first, actor)
    if app_id is not None and (db.get(App, app_id) is None or not sees(apps, app_id)):
        raise ScheduleError("app", f"no app with id {app_id}")
    if app_id is None and apps is not None:
        raise ScheduleError("app", "you may see only some apps: choose one of them")
    schedule = ExportSchedule(dataset=dataset, cron=cron, timezone=zone.key, app_id=app_id, include_raw=include_raw,
                              directory=_directory(directory, exports_dir=exports_dir, confined=limits is not None),
                              created_at=now_ms, next_run_at=first, created_by=actor)
    db.add(schedule)
    db.flush()
    audit.record(db, actor=actor, action="schedule.add", target=f"schedule {schedule.id}", address=address,
                 detail={"dataset": dataset, "cron": cron, "timezone": zone.key, "app_id": app_id,
                         "directory": schedule.directory, "include_raw": include_raw}, now=now_ms)
    return schedule


def _within(db: Session, limits: ScheduleLimits, trigger: CronTrigger, first: int, actor: str) -> None:
    fires = [first]
    while len(fires) < FIRES_CHECKED and (following := next_fire(trigger, after_ms=fires[-1])) is not None:
        fires.append(following)
    shortest = min((b - a for a, b in zip(fires, fires[1:])), default=limits.min_interval_ms)
    if shortest < limits.min_interval_ms:
        raise ScheduleError("cron", f"fires every {shortest / 60_000:g} minutes at times; the API and the dashboard "
                                    f"allow at least {limits.min_interval_ms / 60_000:g} "
                                    "(TALLY_EXPORT_MIN_INTERVAL_MINUTES; the command line has no limit)")
    serialise(db.connection(), [f"export-schedules:{actor}"])  # two adds at once cannot both pass the count
    held = db.exec(select(func.count()).select_from(ExportSchedule).where(ExportSchedule.created_by == actor)).one()
    if held >= limits.per_creator:
        raise ScheduleError("schedules", f"{actor} already has {held} export schedules, the most allowed "
                                         "(TALLY_EXPORT_SCHEDULES_MAX): remove one first")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a folder; a long name, too long a path
        raise ScheduleError("timezone", f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def _directory(text: str | None, *, exports_dir: Path, confined: bool) -> str:
    text = (text or "").strip() or DEFAULT_DIRECTORY
    if "\0" in text:
        raise ScheduleError("directory", "a folder name cannot hold a NUL character")
    if confined and not (exports_dir / text).resolve().is_relative_to(exports_dir.resolve()):
        raise ScheduleError("directory", "must be inside the exports folder (the command line can choose any folder)")
    return text


def export_folder(schedule: ExportSchedule, exports_dir: Path) -> Path:
    return exports_dir / schedule.directory  # an absolute directory replaces exports_dir


def next_fire(trigger: CronTrigger, *, after_ms: int) -> int | None:
    """The crontab's first fire strictly after `after_ms`, in epoch ms; None if it never fires again."""
    moment = trigger.get_next_fire_time(None, datetime.fromtimestamp(after_ms / 1000 + 0.001, UTC))
    return round(moment.timestamp() * 1000) if moment is not None else None


def remove_schedule(db: Session, *, schedule_id: int, actor: str, apps: AppIds, address: str | None = None) -> bool:
    """Removes a schedule and its run history (the files it wrote stay), recorded in the audit trail; False if
    there was none (that one limited to `apps` sees)."""
    schedule = db.get(ExportSchedule, schedule_id)
    if schedule is None or not sees(apps, schedule.app_id):
        return False
    db.exec(delete(ExportRun).where(col(ExportRun.schedule_id) == schedule_id))
    db.delete(schedule)
    db.flush()
    audit.record(db, actor=actor, action="schedule.remove", target=f"schedule {schedule_id}", address=address,
                 detail={"dataset": schedule.dataset, "cron": schedule.cron})
    return True


def list_schedules(db: Session, *, apps: AppIds, now: datetime | None = None, after_id: int = 0,
                   limit: int | None = None, schedule_id: int | None = None) -> list[dict]:
    """Schedules by id (after `after_id`, at most `limit`, or just `schedule_id`) that one limited to `apps` sees,
    each with its app's name, period unit, next run time and last run."""
    now = now or datetime.now(UTC)
    query = (select(ExportSchedule, App.name).join(App, col(App.id) == col(ExportSchedule.app_id), isouter=True)
             .where(col(ExportSchedule.id) > after_id, visible(col(ExportSchedule.app_id), apps))
             .order_by(col(ExportSchedule.id)).limit(limit))
    if schedule_id is not None:
        query = query.where(col(ExportSchedule.id) == schedule_id)
    rows = db.exec(query).all()
    ids = [id_of(schedule) for schedule, _ in rows]
    latest = (select(ExportRun.schedule_id, func.max(col(ExportRun.id)).label("id"))
              .where(col(ExportRun.schedule_id).in_(ids)).group_by(col(ExportRun.schedule_id)).subquery())
    last_runs = {run.schedule_id: run_dict(run)
                 for run in db.exec(select(ExportRun).join(latest, latest.c.id == col(ExportRun.id)))} if ids else {}
    return [schedule_dict(schedule, app_name, now=now, last_run=last_runs.get(id_of(schedule)))
            for schedule, app_name in rows]


def schedule_dict(schedule: ExportSchedule, app_name: str | None, *, now: datetime,
                  last_run: dict | None = None) -> dict:
    next_run_at = schedule.next_run_at
    if next_run_at is None:  # a schedule from before fires were claimed: its first fire from now
        next_run_at = next_fire(cron_trigger(schedule.cron, ZoneInfo(schedule.timezone)),
                                after_ms=round(now.timestamp() * 1000))
    return {"id": schedule.id, "dataset": schedule.dataset, "cron": schedule.cron, "timezone": schedule.timezone,
            "app_id": schedule.app_id, "app": app_name, "directory": schedule.directory,
            "include_raw": schedule.include_raw, "period": granularity(schedule.cron),
            "created_at": schedule.created_at,
            "next_run_at": next_run_at,
            "last_run": last_run}


def recent_runs(db: Session, *, apps: AppIds, schedule_id: int | None = None, limit: int = 50) -> list[dict]:
    """The latest runs, newest first, of one schedule or of all (that one limited to `apps` sees)."""
    query = select(ExportRun).order_by(col(ExportRun.started_at).desc(), col(ExportRun.id).desc()).limit(limit)
    if apps is not None:
        query = query.join(ExportSchedule, col(ExportSchedule.id) == col(ExportRun.schedule_id)).where(
            visible(col(ExportSchedule.app_id), apps))
    if schedule_id is not None:
        query = query.where(ExportRun.schedule_id == schedule_id)
    return [run_dict(run) for run in db.exec(query)]


def run_dict(run: ExportRun) -> dict:
    return {name: getattr(run, name) for name in RUN_FIELDS}
