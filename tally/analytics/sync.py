"""Keeping DuckDB in step with the store: only new or changed rows travel, deletions and regroupings included.

Interactions and users carry `updated_at` (set on insert and whenever a late arrival moves an interaction to
another session); the refresh reads from its watermark less an overlap, so a transaction that committed late
with an older stamp is still picked up, and rows it had already are skipped unless they changed.
"""

import logging
import time
from dataclasses import dataclass

import duckdb

from tally.analytics import rollups
from tally.analytics.prices import PriceTable
from tally.analytics.source import BATCH_ROWS, StoreReader
from tally.analytics.warehouse import SCHEMA_VERSION, Warehouse

log = logging.getLogger(__name__)
OVERLAP_MS = 10_000

_INTERACTION_COLUMNS = (
    ("id", "BIGINT"), ("app_id", "BIGINT"), ("user_id", "BIGINT"), ("session_id", "BIGINT"),
    ("provider", "VARCHAR"), ("type", "VARCHAR"), ("model", "VARCHAR"), ("prompt_tokens", "BIGINT"),
    ("cached_prompt_tokens", "BIGINT"), ("completion_tokens", "BIGINT"), ("total_tokens", "BIGINT"),
    ("usage_source", "VARCHAR"), ("finish_reason", "VARCHAR"), ("request_at", "BIGINT"), ("response_at", "BIGINT"),
    ("latency_ms", "BIGINT"), ("image_count", "INTEGER"), ("is_error", "BOOLEAN"), ("updated_at", "BIGINT"),
    ("input_preview", "VARCHAR"),
)
_USER_COLUMNS = (
    ("id", "BIGINT"), ("app_id", "BIGINT"), ("external_id", "VARCHAR"), ("email", "VARCHAR"),
    ("first_name", "VARCHAR"), ("last_name", "VARCHAR"), ("is_authenticated", "BOOLEAN"), ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
)


def _casts(columns: tuple[tuple[str, str], ...]) -> str:
    """Arrow columns cast to the warehouse types (SQLite hands over booleans as integers, NULL-only as int64)."""
    return ", ".join(f"coalesce(n.{name}::VARCHAR, '') AS {name}" if name == "model" else f"n.{name}::{kind} AS {name}"
                     for name, kind in columns)


@dataclass(frozen=True)
class RefreshReport:
    interactions: int
    users: int
    deleted: int
    full_rollup: bool
    seconds: float


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Refresher:
    def __init__(self, warehouse: Warehouse, reader: StoreReader, prices: PriceTable) -> None:
        self.warehouse = warehouse
        self.reader = reader
        self.prices = prices

    def refresh(self) -> RefreshReport:
        """One incremental pass; a price table or time zone change recomputes every rollup."""
        started, clock = now_ms(), time.perf_counter()
        with self.warehouse.write_lock:
            cursor = self.warehouse.cursor()
            settings_id = f"{SCHEMA_VERSION}:{self.warehouse.timezone}:{self.prices.fingerprint}"
            full = self.warehouse.state("settings_id") != settings_id
            store_count = self.reader.interaction_count()
            cursor.begin()
            try:
                rollups.start_tracking(cursor)
                if full:
                    self._load_prices(cursor)
                changed = self._sync_interactions(cursor)
                deleted, missed = self._reconcile(cursor, store_count)
                if missed:
                    log.warning("analytics missed %d interactions (a clock step?); rereading the store", missed)
                    _set_state(cursor, interaction_watermark=0)
                    changed += self._sync_interactions(cursor)
                # Read after the interactions: the apps, sessions and users they name were committed with them or
                # before, so none can be missing here (read first, a user stored meanwhile would be).
                self._replace_apps(cursor)
                self._append_sessions(cursor)
                users = self._sync_users(cursor)
                self._resolve_models(cursor, "interaction" if full else "affected")
                if full:
                    rollups.rebuild_all(cursor, self.warehouse.timezone)
                else:
                    rollups.update_affected(cursor, self.warehouse.timezone)
                _set_state(cursor, settings_id=settings_id, synced_at=started)
                cursor.commit()
            except BaseException:
                cursor.rollback()
                raise
        return RefreshReport(changed, users, deleted, full, time.perf_counter() - clock)

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
        cursor.execute("INSERT INTO app SELECT id::BIGINT, name::VARCHAR FROM store_apps")
        cursor.unregister("store_apps")

    def _append_sessions(self, cursor: duckdb.DuckDBPyConnection) -> None:
        while True:
            last = cursor.execute("SELECT coalesce(max(id), 0) FROM chat_session").fetchall()[0][0]
            sessions = self.reader.new_sessions(last)
            if sessions.num_rows == 0:
                return
            cursor.register("store_sessions", sessions)
            cursor.execute("INSERT INTO chat_session SELECT id::BIGINT, app_id::BIGINT, external_id::VARCHAR "
                           "FROM store_sessions")
            cursor.unregister("store_sessions")

    def _sync_users(self, cursor: duckdb.DuckDBPyConnection) -> int:
        return self._sync("user", self.reader.changed_users, "end_user", _casts(_USER_COLUMNS), track=False)

    def _sync_interactions(self, cursor: duckdb.DuckDBPyConnection) -> int:
        return self._sync("interaction", self.reader.changed_interactions, "interaction",
                          _casts(_INTERACTION_COLUMNS), track=True)

    def _sync(self, name: str, fetch, table: str, casts: str, *, track: bool) -> int:
        cursor = self.warehouse.cursor()
        watermark = int(self.warehouse.state(f"{name}_watermark", "0"))
        since, after_id, moved = max(0, watermark - OVERLAP_MS), 0, 0
        while True:
            incoming = fetch(since, after_id)
            if incoming.num_rows == 0:
                break
            cursor.register("incoming", incoming)
            cursor.execute(f"CREATE OR REPLACE TEMP TABLE changed AS SELECT {casts} FROM incoming n "
                           f"WHERE NOT EXISTS (SELECT 1 FROM {table} o WHERE o.id = n.id "
                           f"AND o.updated_at = n.updated_at)")
            cursor.unregister("incoming")
            if track:
                rollups.record_affected(cursor, "changed")
            cursor.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM changed)")
            cursor.execute(f"INSERT INTO {table} SELECT * FROM changed")
            if track:
                rollups.record_affected(cursor, "changed")
            moved += cursor.execute("SELECT count(*) FROM changed").fetchall()[0][0]
            since = incoming.column("updated_at")[-1].as_py()
            after_id = incoming.column("id")[-1].as_py()
            watermark = max(watermark, since)
            if incoming.num_rows < BATCH_ROWS:
                break
        _set_state(cursor, **{f"{name}_watermark": watermark})
        return moved

    def _reconcile(self, cursor: duckdb.DuckDBPyConnection, store_count: int) -> tuple[int, int]:
        """Deletions in the store leave no row to travel; a count mismatch finds them. Returns (deleted, missed):
        rows the watermark skipped show up as fewer rows here than the store counted before the sync."""
        local_count = cursor.execute("SELECT count(*) FROM interaction").fetchall()[0][0]
        if local_count == store_count:
            return 0, 0
        ids = self.reader.interaction_ids()
        cursor.register("store_ids", ids)
        cursor.execute("CREATE OR REPLACE TEMP TABLE gone AS SELECT id FROM interaction "
                       "WHERE id NOT IN (SELECT id FROM store_ids)")
        cursor.unregister("store_ids")
        rollups.record_affected(cursor, "gone")
        deleted = cursor.execute("DELETE FROM interaction WHERE id IN (SELECT id FROM gone)").fetchall()[0][0]
        return deleted, max(0, store_count - (local_count - deleted))


def _set_state(cursor: duckdb.DuckDBPyConnection, **values) -> None:
    for name, value in values.items():
        cursor.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", [name, str(value)])
