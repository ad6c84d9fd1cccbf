"""The DuckDB file: its schema, the costed view, and connections for the refresh job and the readers."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import duckdb

SCHEMA_VERSION = "3"

_TABLES = """
CREATE TABLE IF NOT EXISTS sync_state (name VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS interaction (
    id BIGINT, app_id BIGINT, user_id BIGINT, session_id BIGINT, provider VARCHAR, type VARCHAR,
    model VARCHAR, prompt_tokens BIGINT, cached_prompt_tokens BIGINT, completion_tokens BIGINT,
    total_tokens BIGINT, usage_source VARCHAR, finish_reason VARCHAR, request_at BIGINT, response_at BIGINT,
    latency_ms BIGINT, image_count INTEGER, is_error BOOLEAN, updated_at BIGINT, input_preview VARCHAR);
CREATE TABLE IF NOT EXISTS end_user (
    id BIGINT, app_id BIGINT, external_id VARCHAR, email VARCHAR, first_name VARCHAR, last_name VARCHAR,
    is_authenticated BOOLEAN, created_at BIGINT, updated_at BIGINT);
CREATE TABLE IF NOT EXISTS app (id BIGINT, name VARCHAR);
CREATE TABLE IF NOT EXISTS chat_session (id BIGINT, app_id BIGINT, external_id VARCHAR);
CREATE TABLE IF NOT EXISTS price (
    provider VARCHAR, model VARCHAR, input_per_mtok DOUBLE, cached_input_per_mtok DOUBLE,
    output_per_mtok DOUBLE, per_image DOUBLE, effective_ms BIGINT);
CREATE TABLE IF NOT EXISTS model_price (provider VARCHAR, model VARCHAR, price_provider VARCHAR, price_model VARCHAR);
"""

_ROLLUP_MEASURES = """
    interactions BIGINT, errors BIGINT, reported_prompt_tokens BIGINT, reported_completion_tokens BIGINT,
    estimated_prompt_tokens BIGINT, estimated_completion_tokens BIGINT, absent_usage BIGINT, cost DECIMAL(38, 10),
    estimated_cost DECIMAL(38, 10), priced BIGINT, unpriced BIGINT, latency_sum BIGINT, latency_p50 DOUBLE,
    latency_p95 DOUBLE, latency_p99 DOUBLE"""

_ROLLUPS = f"""
CREATE TABLE IF NOT EXISTS rollup_hour (bucket TIMESTAMP, app_id BIGINT, provider VARCHAR, model VARCHAR,
    {_ROLLUP_MEASURES});
CREATE TABLE IF NOT EXISTS rollup_day (bucket TIMESTAMP, app_id BIGINT, provider VARCHAR, model VARCHAR,
    {_ROLLUP_MEASURES});
CREATE TABLE IF NOT EXISTS user_day (bucket TIMESTAMP, app_id BIGINT, user_id BIGINT, interactions BIGINT,
    prompt_tokens BIGINT, completion_tokens BIGINT, total_tokens BIGINT, cost DECIMAL(38, 10), unpriced BIGINT,
    sessions BIGINT, last_at BIGINT);
CREATE TABLE IF NOT EXISTS session_stats (session_id BIGINT, app_id BIGINT, user_id BIGINT, started_at BIGINT,
    ended_at BIGINT, duration_ms BIGINT, turns BIGINT, errors BIGINT, total_tokens BIGINT, cost DECIMAL(38, 10),
    unpriced BIGINT, models VARCHAR);
"""


# Each price row applies from its date until the model's next row, so an interaction finds its rate with an
# equality hash join and a range check: far cheaper per row than an ASOF join (measured at 10M rows: 0.45 s
# against 2.9 s for a sum of costs).
VIEWS = """
CREATE OR REPLACE VIEW model_rate AS
SELECT mp.provider, mp.model, p.input_per_mtok, p.cached_input_per_mtok, p.output_per_mtok, p.per_image,
    p.effective_ms AS valid_from,
    coalesce(lead(p.effective_ms) OVER (PARTITION BY mp.provider, mp.model ORDER BY p.effective_ms),
             9223372036854775807) AS valid_to
FROM model_price mp JOIN price p ON p.provider = mp.price_provider AND p.model = mp.price_model;

CREATE OR REPLACE VIEW costed AS
SELECT i.*, r.provider IS NOT NULL AS priced,
    -- DECIMAL, so that sums are exact and the same whatever order DuckDB's threads add them in
    CASE WHEN r.provider IS NOT NULL THEN CAST(
        (coalesce(i.prompt_tokens, 0) - coalesce(i.cached_prompt_tokens, 0)) * coalesce(r.input_per_mtok, 0) / 1e6
        + coalesce(i.cached_prompt_tokens, 0) * coalesce(r.cached_input_per_mtok, r.input_per_mtok, 0) / 1e6
        + coalesce(i.completion_tokens, 0) * coalesce(r.output_per_mtok, 0) / 1e6
        + i.image_count * coalesce(r.per_image, 0) AS DECIMAL(18, 10))
    END AS cost
FROM interaction i
LEFT JOIN model_rate r ON r.provider = i.provider AND r.model = i.model
    AND i.request_at >= r.valid_from AND i.request_at < r.valid_to;
"""


class Warehouse:
    """One DuckDB database per process; each thread reads through its own cursor."""

    def __init__(self, path: Path, timezone: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.timezone = timezone
        self._connection = duckdb.connect(str(path))
        self._connection.execute("SET TimeZone = 'UTC'")
        self._drop_if_outdated()
        self._connection.execute(_TABLES + _ROLLUPS)
        self._connection.execute("INSERT OR REPLACE INTO sync_state VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        self._connection.execute(VIEWS)
        self._local = threading.local()
        self.write_lock = threading.Lock()

    def _drop_if_outdated(self) -> None:
        """The warehouse is derived from the store: an older layout is dropped and rebuilt, never migrated."""
        connection = self._connection
        tables = {row[0] for row in connection.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary").fetchall()}
        if "sync_state" not in tables:
            return
        version = connection.execute("SELECT value FROM sync_state WHERE name = 'schema_version'").fetchall()
        if version != [(SCHEMA_VERSION,)]:
            views = connection.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' "
                                       "AND NOT internal AND NOT temporary").fetchall()
            for (view,) in views:
                connection.execute(f'DROP VIEW "{view}"')
            for table in tables:
                connection.execute(f'DROP TABLE "{table}"')

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for the calling thread (DuckDB connections are not shared between threads)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._connection.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own in one read transaction: a long reader (a streamed export, whose pages may be
        read from different threads) sees one state of the warehouse while refreshes commit beside it."""
        cursor = self._connection.cursor()
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            cursor.begin()
            yield cursor
        finally:
            cursor.close()

    def state(self, name: str, default: str = "") -> str:
        rows = self.cursor().execute("SELECT value FROM sync_state WHERE name = ?", [name]).fetchall()
        return rows[0][0] if rows else default

    def close(self) -> None:
        self._connection.close()


def fetch_dicts(cursor: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    """Query results as dicts; exact DECIMAL sums become JSON-friendly floats only here, at the edge."""
    result = cursor.execute(sql, params)
    names = [column[0] for column in result.description]
    return [{name: float(value) if isinstance(value, Decimal) else value for name, value in zip(names, row)}
            for row in result.fetchall()]
