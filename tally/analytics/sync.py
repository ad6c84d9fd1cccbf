"""Keeping DuckDB in step with the store: only new or changed rows travel, deletions and regroupings included.

Interactions and users carry `updated_at` (set on insert and whenever a late arrival moves an interaction to
another session); the refresh reads from its watermark less an overlap, so a transaction that committed late
with an older stamp is still picked up, and rows it had already are skipped unless they changed.
"""

import math
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

import duckdb

from tally.analytics import rollups
from tally.analytics.erasures import apply_erasures
from tally.analytics.loading import load_interactions, load_users
from tally.analytics.prices import PriceTable
from tally.analytics.source import BATCH_ROWS, StoreReader
from tally.analytics.verify import verify
from tally.analytics.warehouse import SCHEMA_VERSION, Warehouse

OVERLAP_MS = 10_000


@dataclass(frozen=True)
class RefreshReport:
    interactions: int
    users: int
    deleted: int
    full_rollup: bool
    seconds: float
    verified: bool  # whether this refresh compared the ids of the store and the warehouse
    quarantined: int  # interactions of the store left out of the warehouse, out of bounds
    erased: int = 0  # rows of erased people removed (the file was then rewritten)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Refresher:
    def __init__(self, warehouse: Warehouse, reader: StoreReader, prices: PriceTable, *,
                 verify_seconds: float = 300) -> None:
        self.warehouse = warehouse
        self.reader = reader
        self.prices = prices
        self.verify_seconds = verify_seconds
        self._verified_at: float | None = None  # time.monotonic() of the last verification pass

    def refresh(self, *, verify_all: bool = False) -> RefreshReport:
        """One incremental pass; a price table or time zone change recomputes every rollup. The first pass, and
        then one every `verify_seconds` (or when asked), also verifies that the warehouse holds exactly the
        interactions of the store: deletions reach it then."""
        started, clock = now_ms(), time.perf_counter()
        with self.warehouse.write_lock:
            cursor = self.warehouse.cursor()
            settings_id = f"{SCHEMA_VERSION}:{self.warehouse.timezone}:{self.prices.fingerprint}"
            full = self.warehouse.state("settings_id") != settings_id
            verifying = verify_all or self._verified_at is None or (
                time.monotonic() - self._verified_at >= self.verify_seconds)
            verified_at = time.monotonic()
            cursor.begin()
            try:
                rollups.start_tracking(cursor)
                if full:
                    self._load_prices(cursor)
                seen_id = cursor.execute("SELECT greatest((SELECT coalesce(max(id), 0) FROM interaction), "
                                         "(SELECT coalesce(max(id), 0) FROM quarantine))").fetchall()[0][0]
                changed, watermark = self._sync(
                    "interaction", partial(self.reader.changed_interactions, seen_id=seen_id), load_interactions,
                    until=started)
                deleted = 0
                if verifying:
                    deleted, missed = verify(cursor, self.reader, watermark=watermark - OVERLAP_MS)
                    changed += missed
                # Read after the interactions: the apps, sessions and users they name were committed with them or
                # before, so none can be missing here (read first, a user stored meanwhile would be).
                self._replace_apps(cursor)
                self._append_sessions(cursor)
                users, _ = self._sync("user", self.reader.changed_users, load_users, until=started)
                # Last: an erasure committed before any row above was read is seen here, so no row of the person
                # that this refresh loaded survives it.
                erased = apply_erasures(cursor, self.reader, self.warehouse.state("erasure_id", "0"))
                self._resolve_models(cursor, "interaction" if full else "affected")
                if full:
                    rollups.rebuild_all(cursor, self.warehouse.timezone)
                else:
                    rollups.update_affected(cursor, self.warehouse.timezone)
                _set_state(cursor, settings_id=settings_id, synced_at=started)
                quarantined = cursor.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
                cursor.commit()
            except BaseException:
                with suppress(duckdb.Error):  # a damaged database may refuse the rollback too; the error matters
                    cursor.rollback()
                raise
            if erased:
                self.warehouse.compact()
        if verifying:
            self._verified_at = verified_at
        return RefreshReport(changed, users, deleted, full, time.perf_counter() - clock, verifying, quarantined,
                             erased)

    def _load_prices(self, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.execute("DELETE FROM price")
        cursor.execute("DELETE FROM model_price")
        cursor.executemany("INSERT INTO price VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (p.provider, p.model, p.input_per_mtok, p.cached_input_per_mtok, p.output_per_mtok, p.per_image,
             p.effective_ms) for p in self.prices.prices])

    def _resolve_models(self, cursor: duckdb.DuckDBPyConnection, source: str) -> None:
        """Price the models first seen in `source`: every interaction after a price change, else the rows this
        refresh touched (a full scan at every tick cost about 0.2 s at 10M rows)."""
        new = cursor.execute(f"SELECT DISTINCT provider, model FROM {source} i WHERE NOT EXISTS ("
                             "SELECT 1 FROM model_price m WHERE m.provider = i.provider AND m.model = i.model)"
                             ).fetchall()
        if new:
            cursor.executemany("INSERT INTO model_price VALUES (?, ?, ?, ?)", [
                (provider, model, *(self.prices.resolve(provider, model) or (None, None)))
                for provider, model in new])

    def _replace_apps(self, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.register("store_apps", self.reader.apps())
        cursor.execute("DELETE FROM app")
        cursor.execute("INSERT INTO app SELECT TRY_CAST(id AS BIGINT), TRY_CAST(name AS VARCHAR) FROM store_apps")
        cursor.unregister("store_apps")

    def _append_sessions(self, cursor: duckdb.DuckDBPyConnection) -> None:
        while True:
            last = cursor.execute("SELECT coalesce(max(id), 0) FROM chat_session").fetchall()[0][0]
            sessions = self.reader.new_sessions(last)
            if sessions.num_rows == 0:
                return
            cursor.register("store_sessions", sessions)
            cursor.execute("INSERT INTO chat_session SELECT TRY_CAST(id AS BIGINT), TRY_CAST(app_id AS BIGINT), "
                           "TRY_CAST(external_id AS VARCHAR) FROM store_sessions")
            cursor.unregister("store_sessions")

    def _sync(self, name: str, fetch, load, *, until: int) -> tuple[int, int]:
        """Loads the rows of `name` changed since its watermark (less the overlap); returns how many changed and
        the new watermark. It never passes `until`, the refresh's start: a row stamped by a clock running ahead
        is read again until that time has come, rather than hiding every row stamped after it."""
        cursor = self.warehouse.cursor()
        watermark = int(self.warehouse.state(f"{name}_watermark", "0"))
        since, after_id, moved = max(0, watermark - OVERLAP_MS), 0, 0
        while True:
            incoming = fetch(since, after_id)
            if incoming.num_rows == 0:
                break
            moved += load(cursor, incoming)
            last = incoming.column("updated_at")[-1].as_py()
            if isinstance(last, float) and math.isfinite(last):  # SQLite: a REAL in the column
                last = math.floor(last)
            if not isinstance(last, int):  # SQLite sorts text after every number: nothing readable follows
                break
            since, after_id = last, incoming.column("id")[-1].as_py()
            watermark = max(watermark, min(since, until))
            if incoming.num_rows < BATCH_ROWS:
                break
        _set_state(cursor, **{f"{name}_watermark": watermark})
        return moved, watermark


def _set_state(cursor: duckdb.DuckDBPyConnection, **values) -> None:
    for name, value in values.items():
        cursor.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", [name, str(value)])
