"""Rollups kept in DuckDB: recomputed from raw rows for just the buckets a refresh touched, or all at once.

Each bucket is recomputed whole from the interactions in it, never adjusted by deltas, so the result always
equals a recomputation from scratch (exact latency percentiles included) whatever happened in between.
"""

import duckdb

from tally.analytics.local_time import hour_start_sql, local_bucket_sql

MEASURES = """
    count(*) AS interactions,
    count(*) FILTER (WHERE is_error) AS errors,
    coalesce(sum(prompt_tokens) FILTER (WHERE usage_source = 'reported'), 0) AS reported_prompt_tokens,
    coalesce(sum(completion_tokens) FILTER (WHERE usage_source = 'reported'), 0) AS reported_completion_tokens,
    coalesce(sum(prompt_tokens) FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_prompt_tokens,
    coalesce(sum(completion_tokens) FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_completion_tokens,
    count(*) FILTER (WHERE usage_source = 'absent') AS absent_usage,
    coalesce(sum(cost), 0) AS cost,
    coalesce(sum(cost) FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_cost,
    count(*) FILTER (WHERE priced) AS priced,
    count(*) FILTER (WHERE NOT priced) AS unpriced,
    sum(latency_ms) AS latency_sum,
    quantile_cont(latency_ms, 0.5) AS latency_p50,
    quantile_cont(latency_ms, 0.95) AS latency_p95,
    quantile_cont(latency_ms, 0.99) AS latency_p99"""

# (table, key columns of the rollup, the same keys as columns of `_source`, measures)
_ROLLUPS = (
    ("rollup_hour", ("start_ms", "app_id", "provider", "model"), ("hour", "app_id", "provider", "model"), MEASURES),
    ("rollup_day", ("bucket", "app_id", "provider", "model"), ("day", "app_id", "provider", "model"), MEASURES),
    ("user_day", ("bucket", "app_id", "user_id"), ("day", "app_id", "user_id"), """
        count(*) AS interactions, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
        coalesce(sum(completion_tokens), 0) AS completion_tokens, coalesce(sum(total_tokens), 0) AS total_tokens,
        coalesce(sum(cost), 0) AS cost, count(*) FILTER (WHERE NOT priced) AS unpriced,
        count(DISTINCT session_id) AS sessions, max(request_at) AS last_at"""),
    ("session_stats", ("session_id",), ("session_id",), """
        arg_min(app_id, request_at) AS app_id, arg_min(user_id, request_at) AS user_id,
        min(request_at) AS started_at, max(response_at) AS ended_at,
        max(response_at) - min(request_at) AS duration_ms, count(*) AS turns,
        count(*) FILTER (WHERE is_error) AS errors, coalesce(sum(total_tokens), 0) AS total_tokens,
        coalesce(sum(cost), 0) AS cost, count(*) FILTER (WHERE NOT priced) AS unpriced,
        string_agg(DISTINCT nullif(model, ''), ', ') AS models"""),
)
# Two days either side covers any local day or hour around the affected instants, in any time zone.
_MARGIN_MS = 2 * 86_400_000


def _with_buckets(table: str, zone: str, low: int, high: int, *, where: str = "") -> str:
    """`table`'s rows with their hour (the instant it starts) and local day, exact for times in [low, high]."""
    hour = hour_start_sql("t.request_at", zone, low, high)
    day = local_bucket_sql("t.request_at", "day", zone, low, high)
    return f"(SELECT t.*, {hour} AS hour, {day} AS day FROM {table} t {where})"


def record_affected(cursor: duckdb.DuckDBPyConnection, ids_table: str) -> None:
    """Remember the rollup keys of the interactions whose ids are in `ids_table`, as they stand now."""
    cursor.execute("INSERT INTO affected SELECT app_id, provider, model, user_id, session_id, request_at "
                   f"FROM interaction WHERE id IN (SELECT id FROM {ids_table})")


def start_tracking(cursor: duckdb.DuckDBPyConnection) -> None:
    cursor.execute("CREATE OR REPLACE TEMP TABLE affected (app_id BIGINT, provider VARCHAR, model VARCHAR, "
                   "user_id BIGINT, session_id BIGINT, request_at BIGINT)")


def update_affected(cursor: duckdb.DuckDBPyConnection, zone: str) -> None:
    """Recompute every bucket an `affected` row falls in, reading only the time window those buckets can span."""
    window = cursor.execute("SELECT min(request_at), max(request_at) FROM affected").fetchall()[0]
    if window[0] is None:
        return
    low, high = window[0] - _MARGIN_MS, window[1] + _MARGIN_MS
    affected = _with_buckets("affected", zone, low, high)
    in_window = f"WHERE t.request_at BETWEEN {int(low)} AND {int(high)}"
    for table, keys, sources, measures in _ROLLUPS:
        key_pairs = list(zip(keys, sources))
        touched = f"touched_{table}"
        cursor.execute(f"CREATE OR REPLACE TEMP TABLE {touched} AS SELECT DISTINCT "
                       + ", ".join(f"{source} AS {key}" for key, source in key_pairs) + f" FROM {affected}")
        match = " AND ".join(f"r.{key} = t.{key}" for key in keys)
        cursor.execute(f"DELETE FROM {table} r USING {touched} t WHERE {match}")
        # a session may run for weeks (an explicit session id), so its rows are not limited to the window
        source = _with_buckets("costed", zone, low, high, where="" if table == "session_stats" else in_window)
        on = " AND ".join(f"c.{source_key} = t.{key}" for key, source_key in key_pairs)
        cursor.execute(
            f"INSERT INTO {table} SELECT " + ", ".join(f"c.{source_key} AS {key}" for key, source_key in key_pairs)
            + f", {measures} FROM {source} c SEMI JOIN {touched} t ON {on} GROUP BY ALL")
        cursor.execute(f"DROP TABLE {touched}")


def rebuild_all(cursor: duckdb.DuckDBPyConnection, zone: str) -> None:
    low, high = cursor.execute("SELECT coalesce(min(request_at), 0), coalesce(max(request_at), 0) "
                               "FROM interaction").fetchall()[0]
    source = _with_buckets("costed", zone, low, high)
    for table, keys, sources, measures in _ROLLUPS:
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(f"INSERT INTO {table} SELECT "
                       + ", ".join(f"{source_key} AS {key}" for key, source_key in zip(keys, sources))
                       + f", {measures} FROM {source} GROUP BY ALL")
