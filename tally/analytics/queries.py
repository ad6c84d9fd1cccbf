"""Read queries over DuckDB: usage series and totals, models, users, sessions and interactions.

Unfiltered by user, usage comes from the hour and day rollups and counts whole buckets overlapping the range;
filtered by user it comes from the user's raw interactions and counts exactly the range. Latency percentiles
always come from raw interactions, since percentiles of buckets cannot be combined.
"""

import duckdb

from tally.analytics.filters import Filters
from tally.analytics.local_time import local_bucket_sql
from tally.analytics.warehouse import fetch_dicts

_ROLLUP_SUMS = """
    coalesce(sum(interactions), 0) AS interactions, coalesce(sum(errors), 0) AS errors,
    coalesce(sum(reported_prompt_tokens + estimated_prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(reported_completion_tokens + estimated_completion_tokens), 0) AS completion_tokens,
    coalesce(sum(reported_prompt_tokens + reported_completion_tokens), 0) AS reported_tokens,
    coalesce(sum(estimated_prompt_tokens + estimated_completion_tokens), 0) AS estimated_tokens,
    coalesce(sum(absent_usage), 0) AS absent_usage, coalesce(sum(cost), 0) AS cost,
    coalesce(sum(estimated_cost), 0) AS estimated_cost, coalesce(sum(priced), 0) AS priced,
    coalesce(sum(unpriced), 0) AS unpriced"""
_RAW_SUMS = """
    count(*) AS interactions, count(*) FILTER (WHERE is_error) AS errors,
    coalesce(sum(prompt_tokens) FILTER (WHERE usage_source <> 'absent'), 0) AS prompt_tokens,
    coalesce(sum(completion_tokens) FILTER (WHERE usage_source <> 'absent'), 0) AS completion_tokens,
    coalesce(sum(total_tokens) FILTER (WHERE usage_source = 'reported'), 0) AS reported_tokens,
    coalesce(sum(total_tokens) FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_tokens,
    count(*) FILTER (WHERE usage_source = 'absent') AS absent_usage, coalesce(sum(cost), 0) AS cost,
    coalesce(sum(cost) FILTER (WHERE usage_source = 'estimated'), 0) AS estimated_cost,
    count(*) FILTER (WHERE priced) AS priced, count(*) FILTER (WHERE NOT priced) AS unpriced"""


# One sort of the latencies serves all three percentiles (three quantile_cont calls sort three times).
_PERCENTILES = "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS latency_quantiles"


def _latency_columns(row: dict) -> dict:
    quantiles = row["latency_quantiles"] or [None, None, None]
    return {"latency_p50": quantiles[0], "latency_p95": quantiles[1], "latency_p99": quantiles[2]}


class Queries:
    def __init__(self, cursor: duckdb.DuckDBPyConnection, timezone: str) -> None:
        self._cursor = cursor
        self._zone = timezone

    def _rows(self, sql: str, params: list) -> list[dict]:
        return fetch_dicts(self._cursor, sql, params)

    def _local(self, placeholder: str = "?") -> str:
        return f"timezone(?, epoch_ms({placeholder})::TIMESTAMPTZ)"

    def _usage_source(self, f: Filters, granularity: str) -> tuple[str, str, str, list]:
        """(table, bucket expression, WHERE clause, parameters) for usage over `f`."""
        dims, params = [], []
        for column, value in (("app_id", f.app_id), ("provider", f.provider), ("model", f.model)):
            if value is not None:
                dims.append(f"{column} = ?")
                params.append(value)
        if f.user_id is not None:
            where = ["request_at >= ?", "request_at < ?", "user_id = ?", *dims]
            bucket = local_bucket_sql("request_at", granularity, self._zone, f.start_ms, f.end_ms)
            return "costed", bucket, " AND ".join(where), [f.start_ms, f.end_ms, f.user_id, *params]
        table = "rollup_hour" if granularity == "hour" else "rollup_day"
        where = [f"bucket >= date_trunc('{granularity}', {self._local()})", f"bucket < {self._local()}", *dims]
        return table, "bucket", " AND ".join(where), [self._zone, f.start_ms, self._zone, f.end_ms, *params]

    def usage_sql(self, f: Filters, granularity: str, keys: tuple[str, ...] = ()) -> tuple[str, list]:
        """A SELECT of usage per bucket (and per `keys`, columns of the rollups such as app_id or model)."""
        table, bucket, where, params = self._usage_source(f, granularity)
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        grouped = "".join(f", {key}" for key in keys)
        return f"SELECT {bucket} AS bucket{grouped}, {sums} FROM {table} WHERE {where} GROUP BY ALL", params

    def usage_series(self, f: Filters, granularity: str) -> list[dict]:
        sql, params = self.usage_sql(f, granularity)
        return self._rows(f"{sql} ORDER BY 1", params)

    def usage_series_by_model(self, f: Filters, granularity: str) -> list[dict]:
        """The usage series split by provider and model, for charts stacked by model."""
        table, bucket, where, params = self._usage_source(f, granularity)
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        return self._rows(f"SELECT {bucket} AS bucket, provider, model, {sums} FROM {table} WHERE {where} "
                          f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", params)

    def latency_series(self, f: Filters, granularity: str) -> list[dict]:
        """Latency percentiles per local hour or day, from the interactions themselves."""
        where, params = self._raw_where(f)
        bucket = local_bucket_sql("request_at", granularity, self._zone, f.start_ms, f.end_ms)
        rows = self._rows(f"SELECT {bucket} AS bucket, quantile_cont(latency_ms, [0.5, 0.95]) AS q "
                          f"FROM interaction WHERE {where} GROUP BY 1 ORDER BY 1", params)
        return [{"bucket": row["bucket"], "latency_p50": row["q"][0], "latency_p95": row["q"][1]} for row in rows]

    def filter_options(self) -> dict:
        """The apps, providers and models there are data for, to offer as filters."""
        return {"apps": self._rows("SELECT id, name FROM app ORDER BY name", []),
                "models": self._rows("SELECT DISTINCT provider, model FROM model_price ORDER BY 1, 2", [])}

    def usage_by_model(self, f: Filters) -> list[dict]:
        table, _, where, params = self._usage_source(f, "hour")
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        rows = self._rows(f"SELECT provider, model, {sums} FROM {table} WHERE {where} "
                          f"GROUP BY 1, 2 ORDER BY interactions DESC, provider, model", params)
        latency = {(r["provider"], r["model"]): r for r in self._latency_by_model(f)}
        for row in rows:
            row.update({k: v for k, v in latency.get((row["provider"], row["model"]), {}).items()
                        if k.startswith("latency")})
        return rows

    def totals(self, f: Filters) -> dict:
        table, _, where, params = self._usage_source(f, "hour")
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        [totals] = self._rows(f"SELECT {sums} FROM {table} WHERE {where}", params)
        totals["unpriced_models"] = self._rows(
            f"SELECT provider, model, {'count(*)' if table == 'costed' else 'sum(unpriced)'} AS interactions "
            f"FROM {table} WHERE {where} AND {'NOT priced' if table == 'costed' else 'unpriced > 0'} "
            f"GROUP BY 1, 2 ORDER BY 3 DESC", params)
        where, params = self._raw_where(f)
        [people] = self._rows(f"SELECT {_PERCENTILES}, count(DISTINCT user_id) AS active_users "
                              f"FROM interaction WHERE {where}", params)
        return {**totals, **_latency_columns(people), "active_users": people["active_users"],
                "sessions": self._session_count(f)}

    def _session_count(self, f: Filters) -> int:
        """Sessions with activity in the range; the session rollup answers unless a filter needs raw rows."""
        if f.provider is None and f.model is None and f.user_id is None:
            where, params = ["ended_at >= ?", "started_at < ?"], [f.start_ms, f.end_ms]
            if f.app_id is not None:
                where.append("app_id = ?")
                params.append(f.app_id)
            return self._rows(f"SELECT count(*) AS n FROM session_stats WHERE {' AND '.join(where)}", params)[0]["n"]
        where, params = self._raw_where(f)
        return self._rows(f"SELECT count(DISTINCT session_id) AS n FROM interaction WHERE {where}", params)[0]["n"]

    def _raw_where(self, f: Filters) -> tuple[str, list]:
        where, params = ["request_at >= ?", "request_at < ?"], [f.start_ms, f.end_ms]
        for column, value in (("app_id", f.app_id), ("provider", f.provider), ("model", f.model),
                              ("user_id", f.user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return " AND ".join(where), params

    def _latency_by_model(self, f: Filters) -> list[dict]:
        where, params = self._raw_where(f)
        rows = self._rows(f"SELECT provider, model, {_PERCENTILES} FROM interaction WHERE {where} "
                          f"GROUP BY provider, model", params)
        return [{"provider": row["provider"], "model": row["model"], **_latency_columns(row)} for row in rows]

    def active_users(self, f: Filters, granularity: str) -> list[dict]:
        """Distinct users per local day, week or month: from the user rollup, or from raw interactions when a
        provider or model is asked for (the rollup has neither)."""
        if f.provider is None and f.model is None:
            where, params = self._user_day_where(f)
            source = "user_day"
        else:
            where, params = self._raw_where(f)
            day = local_bucket_sql("request_at", "day", self._zone, f.start_ms, f.end_ms)
            source = f"(SELECT user_id, {day} AS bucket FROM interaction WHERE {where})"
            where = "TRUE"
        return self._rows(f"SELECT date_trunc('{granularity}', bucket) AS bucket, "
                          f"count(DISTINCT user_id) AS active_users FROM {source} WHERE {where} "
                          f"GROUP BY 1 ORDER BY 1", params)

    def _user_day_where(self, f: Filters) -> tuple[str, list]:
        where = [f"bucket >= date_trunc('day', {self._local()})", f"bucket < {self._local()}"]
        params: list = [self._zone, f.start_ms, self._zone, f.end_ms]
        for column, value in (("app_id", f.app_id), ("user_id", f.user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return " AND ".join(where), params

    def top_users(self, f: Filters, sort: str, limit: int) -> list[dict]:
        """Ranked on the day rollup alone; names are joined to the winners only (grouping by the names too took
        four times as long at 10M interactions: 497 ms against 128 ms)."""
        where, params = self._user_day_where(f)
        return self._rows(
            f"SELECT d.user_id, u.external_id, u.email, u.first_name, u.last_name, d.interactions, d.total_tokens, "
            f"d.cost, d.sessions FROM (SELECT user_id, sum(interactions) AS interactions, "
            f"sum(total_tokens) AS total_tokens, sum(cost) AS cost, sum(sessions) AS sessions FROM user_day "
            f"WHERE {where} GROUP BY user_id ORDER BY {sort} DESC, user_id LIMIT ?) d "
            f"LEFT JOIN end_user u ON u.id = d.user_id ORDER BY d.{sort} DESC, d.user_id", [*params, limit])
