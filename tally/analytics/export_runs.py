"""Running an export schedule once: its last complete period written to `DATASET_APP_PERIOD.csv`, and recorded."""

import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session

from tally.analytics.export_datasets import DATASETS
from tally.analytics.export_periods import Period, granularity, last_period
from tally.analytics.export_schedules import export_folder, run_dict
from tally.analytics.exports import Written, stream_csv, write_atomically
from tally.analytics.filters import Filters
from tally.analytics.service import Analytics
from tally.store.engine import writing
from tally.store.models import App, ExportRun, ExportSchedule
from tally.store.secrets import now_ms

log = logging.getLogger(__name__)


def file_name(dataset: str, app_name: str | None, period: Period) -> str:
    """`interactions_all_2026-11-24.csv`; an app's name keeps only characters safe in any file system."""
    app = "all"
    if app_name is not None:
        app = re.sub(r"[^A-Za-z0-9.-]+", "-", app_name).strip("-.") or "app"
    return f"{dataset}_{app}_{period.label}.csv"


def run_schedule(engine: Engine, analytics: Analytics, *, schedule_id: int, now: datetime | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Exports the schedule's last complete period before `now` and returns the run as recorded; None if the
    schedule is gone. Never raises for a failed export: the failure is the run's status and error."""
    now = now or datetime.now(timezone.utc)
    # The job is its own boundary and commits twice: the run shows as running while it writes, and a crash
    # leaves that trace for the next start to mark as interrupted.
    with Session(writing(engine)) as db:
        schedule = db.get(ExportSchedule, schedule_id)
        if schedule is None:
            return None
        app = db.get(App, schedule.app_id) if schedule.app_id is not None else None
        period = last_period(granularity(schedule.cron), ZoneInfo(schedule.timezone), now)
        target = export_folder(schedule, analytics.settings.data_dir) / file_name(
            schedule.dataset, app.name if app else None, period)
        run = ExportRun(schedule_id=schedule_id, period=period.label, period_start=period.start_ms,
                        period_end=period.end_ms, started_at=now_ms(), status="running", file=str(target))
        db.add(run)
        db.commit()
        run_id, dataset, include_raw = run.id, DATASETS[schedule.dataset], schedule.include_raw
        f = Filters(period.start_ms, period.end_ms, app_id=schedule.app_id)
    written, error = Written(), None
    try:
        analytics.refresh()  # the period's last interactions may not have reached DuckDB yet
        write_atomically(target, stream_csv(dataset, warehouse=analytics.warehouse, engine=engine, f=f,
                                            include_raw=include_raw, written=written, should_stop=should_stop))
    except Exception as failure:  # recorded, and retried at the next tick; the scheduler must keep going
        error = f"{type(failure).__name__}: {failure}"
        log.warning("export schedule %d (%s) failed: %s", schedule_id, period.label, error)
    with Session(writing(engine)) as db:
        run = db.get(ExportRun, run_id)
        if run is None:  # the schedule was removed while it ran
            return None
        run.finished_at, run.status, run.error = now_ms(), "failed" if error else "succeeded", error
        if error is None:
            run.rows, run.bytes = written.rows, written.bytes
        db.commit()
        return run_dict(run)
