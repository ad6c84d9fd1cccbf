"""The background scheduler: APScheduler 3 runs the analytics refresh every few seconds, one run at a time, and
the export schedules, whose jobs live in the database so that they survive a restart."""

import logging
from datetime import datetime, timezone

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from tally.analytics.service import Analytics
from tally.server.export_jobs import (JOBSTORE, ExportRuntime, forget_exports, job_store, start_exports,
                                      stop_exports)

log = logging.getLogger(__name__)


def start_scheduler(analytics: Analytics, engine: Engine) -> tuple[BackgroundScheduler, ExportRuntime]:
    scheduler = BackgroundScheduler(timezone=timezone.utc,
                                    jobstores={"default": MemoryJobStore(), JOBSTORE: job_store(engine)})
    scheduler.add_job(
        _refresh, "interval", args=[analytics], id="analytics-refresh",
        seconds=analytics.settings.analytics_refresh_seconds, next_run_time=datetime.now(timezone.utc),
        max_instances=1, coalesce=True, misfire_grace_time=None,
    )
    # Paused until the export jobs match the schedules: a missed export is caught up only once they do.
    scheduler.start(paused=True)
    try:
        exports = start_exports(scheduler, engine, analytics, sync_seconds=analytics.settings.export_sync_seconds)
    except BaseException:
        scheduler.shutdown(wait=False)
        raise
    scheduler.resume()
    return scheduler, exports


def stop_scheduler(scheduler: BackgroundScheduler, exports: ExportRuntime) -> None:
    """No new run starts, a running export gives up at its next page (recorded as failed), then the scheduler
    stops. A run that falls due meanwhile keeps its next run time, so the next start catches it up."""
    scheduler.pause()
    stop_exports(exports)
    scheduler.shutdown(wait=True)
    forget_exports(exports)


def _refresh(analytics: Analytics) -> None:
    try:
        report = analytics.refresh()
    except Exception:  # a failed refresh is retried at the next tick; it must not stop the scheduler
        log.exception("analytics refresh failed")
        return
    if report.interactions or report.deleted or report.full_rollup:
        log.info("analytics refresh: %d interactions, %d deleted, full rollup %s, %.3f s",
                 report.interactions, report.deleted, report.full_rollup, report.seconds)
