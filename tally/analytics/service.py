"""The analytics service: the warehouse, its refresher and its queries, built from settings."""

import os
import time
from zoneinfo import ZoneInfo

import duckdb

from tally.analytics.budgets import BudgetBoard, BudgetRule, count, user_keys
from tally.analytics.duckdb_file import WarehouseBusy, busy_message, damage, is_lock_conflict
from tally.analytics.prices import load_prices
from tally.analytics.queries import Queries
from tally.analytics.source import StoreReader
from tally.analytics.sync import Refresher, RefreshReport
from tally.analytics.warehouse import Warehouse
from tally.store.settings import Settings

# A reader's query begun on a file that was replaced meanwhile may fail just after: its report is about that file.
_STALE_SECONDS = 5


class Analytics:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.analytics_timezone)
        self.warehouse = _free_warehouse(settings)
        try:
            prices = load_prices(settings.prices_file)
        except BaseException:
            self.warehouse.close()  # a bad price file must not leave the DuckDB file held
            raise
        self.refresher = Refresher(self.warehouse, StoreReader(settings.database_url), prices,
                                   verify_seconds=settings.analytics_verify_seconds)
        self._damaged: tuple[BaseException, float] | None = None  # what a reader found, and when
        self.budgets = BudgetBoard(settings.analytics_timezone)

    def count_budgets(self, rules: list[BudgetRule]) -> None:
        """Counts each budget's use in its current window (after a refresh) for checks to read; `counted_at` is
        when that refresh began: what the store held then is counted."""
        cursor, now = self.warehouse.cursor(), time.time_ns() // 1_000_000
        counted = count(cursor, rules, self.settings.analytics_timezone, now)
        self.budgets.replace(counted, user_keys(cursor, counted), int(self.warehouse.state("synced_at", "0")))

    def refresh(self, *, verify_all: bool = False) -> RefreshReport:
        """Catches up with the store. A damaged file is moved aside and rebuilt at once from the store."""
        damaged, self._damaged = self._damaged, None
        if damaged is not None and damaged[1] - self.warehouse.replaced_at > _STALE_SECONDS:
            self.warehouse.recover(damaged[0])
        else:
            try:
                return self.refresher.refresh(verify_all=verify_all)
            except duckdb.Error as error:
                if not self.warehouse.recover(error):
                    raise
        return self.refresher.refresh(verify_all=True)

    def reader_failed(self, error: BaseException) -> bool:
        """A query of a reader failed: True when it found the file damaged, which the next refresh then replaces
        (a damaged block only readers touch would otherwise fail them for good)."""
        if damage(error) != "damaged":
            return False
        self._damaged = (error, time.monotonic())
        return True

    def queries(self) -> Queries:
        return Queries(self.warehouse.cursor(), self.settings.analytics_timezone)

    def freshness(self) -> dict:
        """When the data shown was last caught up with the store, how long ago that is, and how many interactions
        of the store are left out because their values are out of bounds (see the log for which and why)."""
        synced_at = int(self.warehouse.state("synced_at", "0"))
        quarantined = self.warehouse.cursor().execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
        now = time.time_ns() // 1_000_000
        return {"synced_at": synced_at or None, "lag_ms": now - synced_at if synced_at else None,
                "refresh_seconds": self.settings.analytics_refresh_seconds, "quarantined": quarantined}

    def close(self) -> None:
        self.refresher.reader.close()
        self.warehouse.close()


def _free_warehouse(settings: Settings) -> Warehouse:
    """The first of the server's DuckDB files no other process holds: one per worker of `tally serve --workers N`
    (`analytics.duckdb`, then `analytics-2.duckdb`…), so that each keeps its own read model of the store."""
    paths = [settings.analytics_path] + [settings.analytics_path.with_name(f"analytics-{slot}.duckdb")
                                         for slot in range(2, settings.workers + 1)]
    for path in paths[:-1]:
        try:
            return Warehouse(path, settings.analytics_timezone)
        except WarehouseBusy:
            continue
    return Warehouse(paths[-1], settings.analytics_timezone)


def refresh_once(settings: Settings) -> RefreshReport:
    analytics = Analytics(settings)
    try:
        return analytics.refresh()
    finally:
        analytics.close()


def rebuild(settings: Settings) -> RefreshReport:
    """Recreate the DuckDB file from the store, next to the old one, then swap it in. A damaged old file is no
    obstacle; only another process holding it is."""
    target = settings.analytics_path
    _refuse_if_locked(target)
    building = target.with_suffix(".rebuilding.duckdb")
    building.unlink(missing_ok=True)
    warehouse, reader = Warehouse(building, settings.analytics_timezone), StoreReader(settings.database_url)
    try:
        report = Refresher(warehouse, reader, load_prices(settings.prices_file)).refresh()
    finally:
        reader.close()
        warehouse.close()
    os.replace(building, target)
    target.with_suffix(".duckdb.wal").unlink(missing_ok=True)
    return report


def _refuse_if_locked(path) -> None:
    if not path.exists():
        return
    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as error:
        if is_lock_conflict(error):
            raise WarehouseBusy(busy_message(path, error)) from None
