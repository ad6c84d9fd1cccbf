"""Loading store rows into DuckDB: every value read with TRY_CAST, and interactions outside Tally's bounds kept
out of the warehouse, in a quarantine table, so that one bad row never stops a refresh.

Ingest refuses such values, but a store may hold rows from before it did, or rows written by hand, and SQLite
keeps any value in any column (a REAL 1e300 or a text in an INTEGER column).
"""

import logging

import duckdb
import pyarrow
import pyarrow.compute

from tally.analytics import rollups
from tally.store.limits import MAX_EPOCH_MS, MAX_LATENCY_MS, MAX_TOKENS

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = (
    ("id", "BIGINT"), ("app_id", "BIGINT"), ("user_id", "BIGINT"), ("session_id", "BIGINT"),
    ("provider", "VARCHAR"), ("type", "VARCHAR"), ("model", "VARCHAR"), ("prompt_tokens", "BIGINT"),
    ("cached_prompt_tokens", "BIGINT"), ("completion_tokens", "BIGINT"), ("total_tokens", "BIGINT"),
    ("usage_source", "VARCHAR"), ("finish_reason", "VARCHAR"), ("request_at", "BIGINT"), ("response_at", "BIGINT"),
    ("latency_ms", "BIGINT"), ("image_count", "INTEGER"), ("is_error", "BOOLEAN"), ("updated_at", "BIGINT"),
    ("input_preview", "VARCHAR"), ("malformed", "BOOLEAN"),
)
USER_COLUMNS = (
    ("id", "BIGINT"), ("app_id", "BIGINT"), ("external_id", "VARCHAR"), ("email", "VARCHAR"),
    ("first_name", "VARCHAR"), ("last_name", "VARCHAR"), ("is_authenticated", "BOOLEAN"), ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
)
# What costs, sums and time buckets rely on (see the `costed` view); NULL means unknown and is valid. Ingest
# stores total_tokens as prompt plus completion tokens.
_BOUNDS = {
    "prompt_tokens": (0, MAX_TOKENS), "cached_prompt_tokens": (0, MAX_TOKENS),
    "completion_tokens": (0, MAX_TOKENS), "total_tokens": (0, 2 * MAX_TOKENS), "latency_ms": (0, MAX_LATENCY_MS),
    "request_at": (0, MAX_EPOCH_MS), "response_at": (0, MAX_EPOCH_MS), "image_count": (0, 2**31 - 1),
}


def _value(name: str, kind: str) -> str:
    value = f"TRY_CAST(n.{name} AS {kind})"
    return f"coalesce({value}, '')" if name == "model" else value


def _problems(name: str, kind: str) -> list[str]:
    """SQL naming what is wrong with column `name` of a row, NULL when nothing is."""
    shown = f"coalesce(left(TRY_CAST(n.{name} AS VARCHAR), 40), '?')"
    expected = {"BIGINT": "an integer", "INTEGER": "an integer", "BOOLEAN": "a boolean"}.get(kind, "text")
    found = [f"CASE WHEN n.{name} IS NOT NULL AND TRY_CAST(n.{name} AS {kind}) IS NULL "
             f"THEN '{name} ' || {shown} || ' is not {expected}' END"]
    if name in _BOUNDS:
        low, high = _BOUNDS[name]
        found.append(f"CASE WHEN TRY_CAST(n.{name} AS {kind}) NOT BETWEEN {low} AND {high} "
                     f"THEN '{name} ' || {shown} || ' is outside [{low}, {high}]' END")
    return found


_CHECKED = ("SELECT " + ", ".join(f"{_value(name, kind)} AS {name}" for name, kind in INTERACTION_COLUMNS)
            + ", nullif(concat_ws('; ', " + ", ".join(p for c in INTERACTION_COLUMNS for p in _problems(*c))
            + "), '') AS reason FROM incoming n")
_NAMES = ", ".join(name for name, _ in INTERACTION_COLUMNS)


def load_interactions(cursor: duckdb.DuckDBPyConnection, incoming: pyarrow.Table) -> int:
    """Store rows in, replacing the version the warehouse holds unless it is the same; returns how many changed.
    A row outside the bounds goes to quarantine instead, logged once, and comes back once it is fixed."""
    cursor.register("incoming", incoming)
    # The ids' range lets DuckDB skip every row group of older rows (ids grow as rows are stored), instead of
    # matching the whole table against each refresh's few thousand rows.
    low, high = _id_range(incoming)
    cursor.execute(f"CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM ({_CHECKED}) n "
                   f"WHERE NOT EXISTS (SELECT 1 FROM interaction o WHERE o.id BETWEEN {low} AND {high} "
                   "AND o.id = n.id AND o.updated_at = n.updated_at) "
                   "AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.id = n.id AND q.reason = n.reason "
                   "AND q.updated_at IS NOT DISTINCT FROM n.updated_at)")
    cursor.unregister("incoming")
    rollups.record_affected(cursor, "changed")  # where the old versions counted
    cursor.execute("DELETE FROM interaction WHERE id IN (SELECT id FROM changed)")
    cursor.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM changed)")
    cursor.execute(f"INSERT INTO interaction SELECT {_NAMES} FROM changed WHERE reason IS NULL")
    cursor.execute("INSERT INTO quarantine SELECT id, updated_at, reason FROM changed WHERE reason IS NOT NULL")
    rollups.record_affected(cursor, "changed")
    for row_id, reason in cursor.execute(
            "SELECT id, reason FROM changed WHERE reason IS NOT NULL ORDER BY id").fetchall():
        log.warning("analytics: interaction %d is left out of the analytics until it is fixed in the store: %s",
                    row_id, reason)
    return cursor.execute("SELECT count(*) FROM changed").fetchall()[0][0]


def _id_range(incoming: pyarrow.Table) -> tuple[int, int]:
    ids = pyarrow.compute.min_max(pyarrow.compute.cast(incoming.column("id"), pyarrow.int64(), safe=False))
    low, high = ids["min"].as_py(), ids["max"].as_py()
    return (int(low), int(high)) if low is not None and high is not None else (0, -1)


def load_users(cursor: duckdb.DuckDBPyConnection, incoming: pyarrow.Table) -> int:
    """Store rows in, a value that cannot be read becoming NULL: a user row feeds no arithmetic."""
    cursor.register("incoming", incoming)
    cursor.execute("CREATE OR REPLACE TEMP TABLE changed AS SELECT "
                   + ", ".join(f"{_value(name, kind)} AS {name}" for name, kind in USER_COLUMNS)
                   + " FROM incoming n WHERE NOT EXISTS (SELECT 1 FROM end_user o WHERE o.id = n.id "
                   "AND o.updated_at IS NOT DISTINCT FROM TRY_CAST(n.updated_at AS BIGINT))")
    cursor.unregister("incoming")
    cursor.execute("DELETE FROM end_user WHERE id IN (SELECT id FROM changed)")
    cursor.execute("INSERT INTO end_user SELECT * FROM changed")
    return cursor.execute("SELECT count(*) FROM changed").fetchall()[0][0]
