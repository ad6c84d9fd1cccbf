"""Rollups kept in DuckDB: recomputed from raw rows for just the buckets a refresh touched, or all at once.

Each bucket is recomputed whole from the interactions in it, never adjusted by deltas, so the result always
equals a recomputation from scratch (exact latency percentiles included) whatever happened in between.
"""

import duckdb

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

# (table, key columns of the rollup, the same keys as computed on `costed`, measures)
_ROLLUPS = (
    ("rollup_hour", ("bucket", "app_id", "provider", "model"), ("hour", "app_id", "provider", "model"), MEASURES),
    ("rollup_day", ("bucket", "app_id", "provider", "model"), ("day", "app_id", "provider", "model"), MEASURES),
    ("user_day", ("bucket", "app_id", "user_id"), ("day", "app_id", "user_id"), """
        count(*) AS interactions, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
        coalesce(sum(completion_tokens), 0) AS completion_tokens, coalesce(sum(total_tokens), 0) AS total_tokens,
        coalesce(sum(cost), 0) AS cost, count(DISTINCT session_id) AS sessions, max(request_at) AS last_at"""),
    ("session_stats", ("session_id",), ("session_id",), """
        arg_min(app_id, request_at) AS app_id, arg_min(user_id, request_at) AS user_id,
        min(request_at) AS started_at, max(response_at) AS ended_at,
        max(response_at) - min(request_at) AS duration_ms, count(*) AS turns,
        count(*) FILTER (WHERE is_error) AS errors, coalesce(sum(total_tokens), 0) AS total_tokens,
        coalesce(sum(cost), 0) AS cost, string_agg(DISTINCT nullif(model, ''), ', ') AS models"""),
)

AFFECTED_COLUMNS = "app_id, provider, model, hour, day, user_id, session_id, request_at"


def record_affected(cursor: duckdb.DuckDBPyConnection, ids_table: str) -> None:
    """Remember the buckets of the interactions whose ids are in `ids_table`, as they stand now."""
    cursor.execute(f"INSERT INTO affected SELECT {AFFECTED_COLUMNS} FROM costed "
                   f"WHERE id IN (SELECT id FROM {ids_table})")


def start_tracking(cursor: duckdb.DuckDBPyConnection) -> None:
    cursor.execute("CREATE OR REPLACE TEMP TABLE affected (app_id BIGINT, provider VARCHAR, model VARCHAR, "
                   "hour TIMESTAMP, day TIMESTAMP, user_id BIGINT, session_id BIGINT, request_at BIGINT)")


def update_affected(cursor: duckdb.DuckDBPyConnection) -> None:
    """Recompute every bucket listed in `affected`, reading only the time window those buckets can span."""
    window = cursor.execute("SELECT min(request_at), max(request_at) FROM affected").fetchall()[0]
    if window[0] is None:
        return
    # Two days either side covers any local day or hour around the affected instants, in any time zone.
    low, high = window[0] - 2 * 86_400_000, window[1] + 2 * 86_400_000
    for table, keys, sources, measures in _ROLLUPS:
        key_pairs = list(zip(keys, sources))
        touched = f"touched_{table}"
        cursor.execute(f"CREATE OR REPLACE TEMP TABLE {touched} AS SELECT DISTINCT "
                       + ", ".join(f"{source} AS {key}" for key, source in key_pairs) + " FROM affected")
        match = " AND ".join(f"r.{key} = t.{key}" for key in keys)
        cursor.execute(f"DELETE FROM {table} r USING {touched} t WHERE {match}")
        in_window = "" if table == "session_stats" else f"AND c.request_at BETWEEN {low} AND {high}"
        on = " AND ".join(f"c.{source} = t.{key}" for key, source in key_pairs)
        cursor.execute(
            f"INSERT INTO {table} SELECT " + ", ".join(f"c.{source} AS {key}" for key, source in key_pairs)
            + f", {measures} FROM costed c SEMI JOIN {touched} t ON {on} WHERE TRUE {in_window} GROUP BY ALL")
        cursor.execute(f"DROP TABLE {touched}")


def rebuild_all(cursor: duckdb.DuckDBPyConnection) -> None:
    for table, keys, sources, measures in _ROLLUPS:
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(f"INSERT INTO {table} SELECT "
                       + ", ".join(f"{source} AS {key}" for key, source in zip(keys, sources))
                       + f", {measures} FROM costed GROUP BY ALL")
