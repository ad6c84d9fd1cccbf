"""The background scheduler: APScheduler 3 runs the analytics refresh every few seconds, the export ticker, alert
deliveries and the nightly retention pass, each one run at a time, in every server; the claims of exports and of
retention passes live in the store, so each runs on one replica."""

import logging
import threading
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlmodel import Session

from tally.analytics.budgets import BudgetRule
from tally.analytics.service import Analytics
from tally.exports.ticker import tick
from tally.server import alerting
from tally.store.budgets import list_budgets
from tally.store.logs import QuietLog
from tally.store.models import id_of
from tally.store.retention import apply_retention, claim_day, record_run

log = logging.getLogger(__name__)
RETENTION_HOUR = 3  # the nightly retention pass starts at 03:00 in the analytics time zone
RETENTION_CHECK_SECONDS = 600


class Scheduler:
    def __init__(self, analytics: Analytics, engine: Engine) -> None:
        settings = analytics.settings
        self._analytics, self._engine, self._replica = analytics, engine, settings.replica_name
        self.stopping = threading.Event()
        self._refresh_log, self._export_log = QuietLog(log), QuietLog(log)
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(self._refresh, "interval", id="analytics-refresh",
                                seconds=settings.analytics_refresh_seconds, next_run_time=datetime.now(UTC),
                                max_instances=1, coalesce=True, misfire_grace_time=None)
        self._scheduler.add_job(self._exports, "interval", id="export-ticker", seconds=settings.export_sync_seconds,
                                next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
                                misfire_grace_time=None)
        self._retention_log = QuietLog(log)
        # First looked at one interval after the start: a nightly pass has no reason to write as the server starts.
        self._scheduler.add_job(self._retention, "interval", id="retention", seconds=RETENTION_CHECK_SECONDS,
                                max_instances=1, coalesce=True, misfire_grace_time=None)
        self._alert_log, self._webhooks = QuietLog(log), httpx.Client(follow_redirects=False)
        self._scheduler.add_job(self._alerts, "interval", id="alert-deliveries",
                                seconds=settings.alert_delivery_seconds, max_instances=1, coalesce=True,
                                misfire_grace_time=None)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """No new run starts, a running export gives up at its next page (recorded as failed), then it stops. A
        fire that falls due meanwhile stays due in the store, so the next tick of any server catches it up."""
        self.stopping.set()
        self._scheduler.shutdown(wait=True)
        self._webhooks.close()

    def _refresh(self) -> None:
        try:
            report = self._analytics.refresh()
            self._analytics.count_budgets(budget_rules(self._engine))
        except Exception as error:  # retried at the next tick; it must not stop the scheduler
            self._refresh_log.failure("analytics refresh failed", error)
            return
        try:
            alerting.evaluate(self._engine, self._analytics)
        except Exception as error:
            self._alert_log.failure("reading the alert rules failed", error)
        if report.interactions or report.deleted or report.full_rollup:
            log.info("analytics refresh: %d interactions, %d deleted, full rollup %s, %.3f s",
                     report.interactions, report.deleted, report.full_rollup, report.seconds)

    def _alerts(self) -> None:
        try:
            alerting.deliver_due(self._engine, self._webhooks)
        except Exception as error:  # a store that cannot answer now: the next tick tries again
            self._alert_log.failure("delivering alerts failed", error)

    def _retention(self) -> None:
        """Once a day, from RETENTION_HOUR in the analytics time zone, on whichever replica claims the day."""
        settings = self._analytics.settings
        local = datetime.now(ZoneInfo(settings.analytics_timezone))
        if local.hour < RETENTION_HOUR:
            return
        try:
            now = int(local.timestamp() * 1000)
            day = local.date().isoformat()
            if not claim_day(self._engine, day=day, replica=self._replica, now=now):
                return
            removed = apply_retention(self._engine, now=now, data_dir=settings.data_dir)
            record_run(self._engine, day=day, removed=removed, now=int(time.time() * 1000))
        except Exception as error:  # the store cannot answer now: tomorrow's pass removes what is due then
            self._retention_log.failure("the retention pass failed", error)
            return
        log.info("retention: the content of %d interactions and %d images removed in %.1f s",
                 removed.interactions, removed.images, removed.seconds)

    def _exports(self) -> None:
        try:
            tick(self._engine, self._analytics, replica=self._replica, should_stop=self.stopping.is_set)
        except Exception as error:  # a store that cannot answer now: the next tick tries again
            self._export_log.failure("looking for due exports failed", error)


def budget_rules(engine: Engine) -> list[BudgetRule]:
    with Session(engine) as db:
        return [BudgetRule(id_of(b), b.app_id, b.per_user, b.metric, b.limit_value, b.period, b.model, b.warn_at)
                for b in list_budgets(db, apps=None)]
