"""Running an export schedule once: a period written to `DATASET_APP_PERIOD.csv`, and recorded with its replica."""

import logging
import re
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session

from tally.analytics.filters import Filters
from tally.analytics.service import Analytics
from tally.exports.csv_files import Written, stream_csv, write_atomically
from tally.exports.datasets import DATASETS
from tally.exports.periods import Period
from tally.exports.schedules import export_folder, run_dict
from tally.store.engine import writing
from tally.store.models import App, ExportRun, ExportSchedule, id_of
from tally.store.secrets import now_ms

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0  # how often a running export says it is alive; far below the takeover's STALE_MS


def file_name(dataset: str, app_name: str | None, period: Period) -> str:
    """`interactions_all_2026-11-24.csv`; an app's name keeps only characters safe in any file system."""
    app = "all"
    if app_name is not None:
        app = re.sub(r"[^A-Za-z0-9.-]+", "-", app_name).strip("-.") or "app"
    return f"{dataset}_{app}_{period.label}.csv"


def run_period(engine: Engine, analytics: Analytics, *, schedule_id: int, period: Period, replica: str,
               should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Exports `period` for the schedule and returns the run as recorded; None if the schedule is gone. Never
    raises for a failed export: the failure is the run's status and error."""
    # Its own boundary, committed at the start (the run shows as running, with a heartbeat another replica can
    # watch), while it runs (heartbeats) and at the end.
    with Session(writing(engine)) as db:
        schedule = db.get(ExportSchedule, schedule_id)
        if schedule is None:
            return None
        app = db.get(App, schedule.app_id) if schedule.app_id is not None else None
        target = export_folder(schedule, analytics.settings.exports_folder) / file_name(
            schedule.dataset, app.name if app else None, period)
        started = now_ms()
        run = ExportRun(schedule_id=schedule_id, period=period.label, period_start=period.start_ms,
                        period_end=period.end_ms, started_at=started, status="running", file=str(target),
                        replica=replica, heartbeat_at=started)
        db.add(run)
        db.commit()
        run_id, dataset, include_raw = id_of(run), DATASETS[schedule.dataset], schedule.include_raw
        f = Filters(period.start_ms, period.end_ms, app_id=schedule.app_id)
    alive = _Heartbeat(engine, run_id, should_stop)
    written, error = Written(), None
    try:
        analytics.refresh(verify_all=True)  # the period's last interactions and deletions may not be there yet
        write_atomically(target, stream_csv(dataset, warehouse=analytics.warehouse, engine=engine, f=f,
                                            include_raw=include_raw, written=written, should_stop=alive))
    except Exception as failure:  # recorded, and retried at the period's next fire; the scheduler must go on
        error = f"{type(failure).__name__}: {failure}"
        log.warning("export schedule %d (%s) failed: %s", schedule_id, period.label, error)
    with Session(writing(engine)) as db:
        finished = db.get(ExportRun, run_id)
        if finished is None:  # the schedule was removed while it ran
            return None
        finished.finished_at, finished.status, finished.error = now_ms(), "failed" if error else "succeeded", error
        if error is None:
            finished.rows, finished.bytes = written.rows, written.bytes
        db.commit()
        return run_dict(finished)


class _Heartbeat:
    """Asked between pages whether to stop: answers what `should_stop` says, and every HEARTBEAT_SECONDS stamps
    the run as alive, so that no other replica takes it over while it writes."""

    def __init__(self, engine: Engine, run_id: int, should_stop: Callable[[], bool] | None) -> None:
        self._engine, self._run_id, self._should_stop = engine, run_id, should_stop
        self._last = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            self._last = time.monotonic()
            with Session(writing(self._engine)) as db:
                run = db.get(ExportRun, self._run_id)
                if run is not None:
                    run.heartbeat_at = now_ms()
                    db.commit()
        return self._should_stop is not None and self._should_stop()
