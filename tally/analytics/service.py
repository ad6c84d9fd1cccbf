"""The analytics service: the warehouse, its refresher and its queries, built from settings."""

import os
import time
from zoneinfo import ZoneInfo

import duckdb

from tally.analytics.prices import load_prices
from tally.analytics.queries import Queries
from tally.analytics.source import StoreReader
from tally.analytics.sync import Refresher, RefreshReport
from tally.analytics.warehouse import Warehouse
from tally.store.settings import Settings


class WarehouseBusy(RuntimeError):
    """Another process (usually the running server) holds the DuckDB file."""


class Analytics:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.analytics_timezone)
        try:
            self.warehouse = Warehouse(settings.analytics_path, settings.analytics_timezone)
        except duckdb.IOException as error:
            raise WarehouseBusy(f"{settings.analytics_path} is in use by another process (a running "
                                f"server refreshes it every {settings.analytics_refresh_seconds:g} s): {error}") from None
        self.refresher = Refresher(self.warehouse, StoreReader(settings.database_url), load_prices(settings.prices_file))

    def refresh(self) -> RefreshReport:
        return self.refresher.refresh()

    def queries(self) -> Queries:
        return Queries(self.warehouse.cursor(), self.settings.analytics_timezone)

    def freshness(self) -> dict:
        """When the data shown was last caught up with the store, and how long ago that is."""
        synced_at = int(self.warehouse.state("synced_at", "0"))
        now = time.time_ns() // 1_000_000
        return {"synced_at": synced_at or None, "lag_ms": now - synced_at if synced_at else None,
                "refresh_seconds": self.settings.analytics_refresh_seconds}

    def close(self) -> None:
        self.warehouse.close()


def refresh_once(settings: Settings) -> RefreshReport:
    analytics = Analytics(settings)
    try:
        return analytics.refresh()
    finally:
        analytics.close()


def rebuild(settings: Settings) -> RefreshReport:
    """Recreate the DuckDB file from the store, next to the old one, then swap it in."""
    Analytics(settings).close()  # fails early, with a clear error, if a server holds the file
    target = settings.analytics_path
    building = target.with_suffix(".rebuilding.duckdb")
    building.unlink(missing_ok=True)
    warehouse = Warehouse(building, settings.analytics_timezone)
    try:
        report = Refresher(warehouse, StoreReader(settings.database_url), load_prices(settings.prices_file)).refresh()
    finally:
        warehouse.close()
    os.replace(building, target)
    target.with_suffix(".duckdb.wal").unlink(missing_ok=True)
    return report
