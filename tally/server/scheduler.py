"""The background scheduler: APScheduler 3 runs the analytics refresh every few seconds, one run at a time."""

import logging
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from tally.analytics.service import Analytics

log = logging.getLogger(__name__)


def start_scheduler(analytics: Analytics) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.add_job(
        _refresh, "interval", args=[analytics], id="analytics-refresh",
        seconds=analytics.settings.analytics_refresh_seconds, next_run_time=datetime.now(timezone.utc),
        max_instances=1, coalesce=True, misfire_grace_time=None,
    )
    scheduler.start()
    return scheduler


def _refresh(analytics: Analytics) -> None:
    try:
        report = analytics.refresh()
    except Exception:  # a failed refresh is retried at the next tick; it must not stop the scheduler
        log.exception("analytics refresh failed")
        return
    if report.interactions or report.deleted or report.full_rollup:
        log.info("analytics refresh: %d interactions, %d deleted, full rollup %s, %.3f s",
                 report.interactions, report.deleted, report.full_rollup, report.seconds)
