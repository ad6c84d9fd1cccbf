"""Following the store's erasures: every row of an erased person leaves the warehouse (their interactions, profile,
sessions and per-user rollups), and the rollups they counted in are recomputed without them, so the totals per
app and day drop by their share: removed, not anonymised."""

import json

import duckdb

from tally.analytics import rollups
from tally.analytics.source import StoreReader

_BY_USER = ("interaction", "end_user", "user_day", "session_stats")


def apply_erasures(cursor: duckdb.DuckDBPyConnection, reader: StoreReader, done: str) -> int:
    """Applies the erasures recorded after the id `done` (recording the last in sync_state); returns the rows
    removed. Inside the refresh's transaction, with rollups tracking on."""
    erasures = reader.erasures(int(done or 0)).to_pylist()
    if not erasures:
        return 0
    users = sorted({int(u) for row in erasures for u in json.loads(row["user_ids"])})
    sessions = sorted({int(s) for row in erasures for s in json.loads(row["session_ids"])})
    removed = 0
    if users:
        cursor.execute("CREATE OR REPLACE TEMP TABLE erased_user AS SELECT unnest(?::BIGINT[]) AS id", [users])
        cursor.execute("CREATE OR REPLACE TEMP TABLE erased_interaction AS "
                       "SELECT id FROM interaction WHERE user_id IN (SELECT id FROM erased_user)")
        rollups.record_affected(cursor, "erased_interaction")
        for table in _BY_USER:
            key = "id" if table == "end_user" else "user_id"
            removed += _count(cursor.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT id FROM erased_user)"))
    if sessions:
        removed += _count(cursor.execute("DELETE FROM chat_session WHERE id IN (SELECT unnest(?::BIGINT[]))",
                                         [sessions]))
    cursor.execute("INSERT OR REPLACE INTO sync_state VALUES ('erasure_id', ?)", [str(erasures[-1]["id"])])
    return removed


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row else 0
