"""Read queries over DuckDB: usage series and totals, models, users, sessions and interactions.

Unfiltered by user, usage comes from the hour and day rollups and counts whole buckets overlapping the range;
filtered by user it comes from the user's raw interactions and counts exactly the range. Latency percentiles
always come from raw interactions, since percentiles of buckets cannot be combined.
"""

from typing import Any

import duckdb

from tally.analytics.filters import Filters, all_time
from tally.analytics.local_time import day_bounds, hour_start, hour_start_sql, local_bucket_sql, local_hour, offset_text
from tally.analytics.warehouse import fetch_dicts
from tally.analytics.where import interaction_where, raw_range, where
from tally.store.limits import MAX_FUTURE_MS

GRANULARITIES = ("hour", "day", "week", "month")
MAX_SERIES_BUCKETS = 1200  # a series longer than this is refused: a coarser granularity or a shorter range answers
_BUCKET_MS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000, "month": 28 * 86_400_000}
UNPRICED_SHOWN = 20  # unpriced models named in totals; `unpriced_models_other` counts the rest
SUM_COLUMNS = ("interactions", "errors", "prompt_tokens", "completion_tokens", "reported_tokens",
               "estimated_tokens", "absent_usage", "cost", "estimated_cost", "priced", "unpriced")

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


def series_buckets(f: Filters, granularity: str, now_ms: int) -> int:
    """How many buckets a series over `f` can hold at most: only the part of the range that can hold data counts
    (ingest refuses times before 1970 and more than MAX_FUTURE_MS ahead), so `to=9999-12-31` costs nothing."""
    span = min(f.end_ms, now_ms + MAX_FUTURE_MS) - max(f.start_ms, 0)
    return max(span, 0) // _BUCKET_MS[granularity] + 2  # the partial buckets at either end


def _latency_columns(row: dict) -> dict:
    quantiles = row["latency_quantiles"] or [None, None, None]
    return {"latency_p50": quantiles[0], "latency_p95": quantiles[1], "latency_p99": quantiles[2]}


class Queries:
    def __init__(self, cursor: duckdb.DuckDBPyConnection, timezone: str) -> None:
        self._cursor = cursor
        self._zone = timezone

    def _rows(self, sql: str, params: list) -> list[dict]:
        return fetch_dicts(self._cursor, sql, params)

    def _raw_bucket(self, f: Filters, granularity: str) -> str:
        """The hour of `request_at` as the instant it starts (epoch ms), or its local day, week (from Monday) or
        month as a naive TIMESTAMP."""
        if granularity == "hour":
            return hour_start_sql("request_at", self._zone, f.start_ms, f.end_ms)
        day = local_bucket_sql("request_at", "day", self._zone, f.start_ms, f.end_ms)
        return day if granularity == "day" else f"date_trunc('{granularity}', {day})"

    def _usage_source(self, f: Filters, granularity: str) -> tuple[str, str, str, list]:
        """(table, bucket expression, WHERE clause, parameters) for usage over `f`."""
        dims: dict[str, Any] = {"app": "app_id", "provider": "provider", "model": "model"}
        if f.user_id is not None:
            return ("costed", self._raw_bucket(f, granularity),
                    *where(f, time=raw_range(f), user="user_id", **dims).parts())
        if granularity == "hour":
            # Hours are kept by the instant they start, so the range is compared in instants: from the start of
            # the hour holding `start_ms`, up to `end_ms`.
            hours = ("start_ms >= ? AND start_ms < ?", [hour_start(f.start_ms, self._zone), f.end_ms])
            return "rollup_hour", "start_ms", *where(f, time=hours, **dims).parts()
        bucket = "bucket" if granularity == "day" else f"date_trunc('{granularity}', bucket)"
        days = (f"bucket >= date_trunc('{granularity}', ?::TIMESTAMP) AND bucket <= ?",
                [*day_bounds(f.start_ms, f.end_ms, self._zone)])
        return "rollup_day", bucket, *where(f, time=days, **dims).parts()

    def _named(self, rows: list[dict], granularity: str) -> list[dict]:
        """Hour rows, keyed by the instant each hour starts, also get its wall-clock name (`bucket`) and UTC offset:
        the hour the clocks go back through has the same name twice."""
        if granularity != "hour":
            return rows
        named = []
        for row in rows:
            start = row.pop("bucket")
            name, offset = local_hour(start, self._zone)
            named.append({"bucket": name, "start_ms": start, "utc_offset": offset_text(offset), **row})
        return named

    def usage_sql(self, f: Filters, granularity: str, keys: tuple[str, ...] = ()) -> tuple[str, list]:
        """A SELECT of usage per bucket (and per `keys`, columns of the rollups such as app_id or model)."""
        table, bucket, where, params = self._usage_source(f, granularity)
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        grouped = "".join(f", {key}" for key in keys)
        return f"SELECT {bucket} AS bucket{grouped}, {sums} FROM {table} WHERE {where} GROUP BY ALL", params

    def usage_series(self, f: Filters, granularity: str) -> list[dict]:
        sql, params = self.usage_sql(f, granularity)
        return self._named(self._rows(f"{sql} ORDER BY 1", params), granularity)

    def usage_series_by_model(self, f: Filters, granularity: str, *, top: int) -> list[dict]:
        """Tokens per bucket of the `top` models by tokens in the range; the rest summed per bucket in rows marked
        `other` (model None), so the answer grows with the buckets, never with the number of models."""
        table, bucket, where, params = self._usage_source(f, granularity)
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        return self._named(self._rows(f"""
            WITH per AS (SELECT {bucket} AS bucket, coalesce(model, '') AS model, {sums} FROM {table}
                         WHERE {where} GROUP BY 1, 2),
            ranked AS (SELECT model, row_number() OVER (ORDER BY sum(prompt_tokens + completion_tokens) DESC, model)
                                     > ? AS other FROM per GROUP BY model)
            SELECT p.bucket, CASE WHEN NOT r.other THEN nullif(p.model, '') END AS model, r.other,
                   sum(p.prompt_tokens) AS prompt_tokens, sum(p.completion_tokens) AS completion_tokens
            FROM per p JOIN ranked r USING (model) GROUP BY 1, 2, 3 ORDER BY 1, 3, 2""", [*params, top]), granularity)

    def latency_series(self, f: Filters, granularity: str) -> list[dict]:
        """Latency percentiles per local bucket, from the interactions themselves."""
        where, params = self._raw_where(f)
        rows = self._rows(f"SELECT {self._raw_bucket(f, granularity)} AS bucket, "
                          f"quantile_cont(latency_ms, [0.5, 0.95]) AS q "
                          f"FROM interaction WHERE {where} GROUP BY 1 ORDER BY 1", params)
        return self._named([{"bucket": row["bucket"], "latency_p50": row["q"][0], "latency_p95": row["q"][1]}
                            for row in rows], granularity)

    def filter_options(self, *, top_models: int, apps: frozenset[int] | None) -> dict:
        """The apps and providers to offer as filters, and the `top_models` models with the most interactions
        (any other model can still be typed in), of the apps a reader limited to `apps` sees."""
        seen = all_time(apps=apps)
        app_where, app_params = where(seen, time=("TRUE", []), app="id").parts()
        used_where, used_params = where(seen, time=("TRUE", []), app="app_id").parts()
        return {"apps": self._rows(f"SELECT id, name FROM app WHERE {app_where} ORDER BY name", app_params),
                "providers": [row["provider"] for row in self._rows(
                    f"SELECT DISTINCT provider FROM rollup_day WHERE {used_where} ORDER BY 1", used_params)],
                "models": self._rows(f"SELECT provider, model FROM rollup_day WHERE coalesce(model, '') <> '' "
                                     f"AND {used_where} GROUP BY 1, 2 ORDER BY sum(interactions) DESC, 1, 2 LIMIT ?",
                                     [*used_params, top_models])}

    def usage_by_model(self, f: Filters, *, limit: int) -> dict:
        """The `limit` provider and model pairs with the most interactions, each with its latency percentiles,
        and `other`: the rest summed (with how many `models` they are), or None when there is no rest."""
        table, _, where, params = self._usage_source(f, "hour")
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        rows = self._rows(f"""
            WITH per AS (SELECT provider, model, {sums} FROM {table} WHERE {where} GROUP BY 1, 2),
            ranked AS (SELECT *, row_number() OVER (ORDER BY interactions DESC, provider, model) AS rank FROM per),
            marked AS (SELECT *, rank <= ? AS shown FROM ranked)
            SELECT shown, CASE WHEN shown THEN provider END AS provider, CASE WHEN shown THEN model END AS model,
                   count(*) AS models, {', '.join(f'sum({column}) AS {column}' for column in SUM_COLUMNS)}
            FROM marked GROUP BY ALL ORDER BY min(rank)""", [*params, limit])
        top, other = [], None
        for row in rows:
            if row.pop("shown"):
                del row["models"]
                top.append(row)
            else:
                other = {key: value for key, value in row.items() if key not in ("provider", "model")}
        latency = {(r["provider"], r["model"]): r for r in self._latency_by_model(f, top)}
        for row in top:
            row.update({k: v for k, v in latency.get((row["provider"], row["model"]), {}).items()
                        if k.startswith("latency")})
        return {"models": top, "other": other}

    def unpriced_models(self, f: Filters, *, limit: int) -> dict:
        """The `limit` models without a price that have the most interactions in the range, and how many other
        unpriced models and interactions there are."""
        table, _, where, params = self._usage_source(f, "hour")
        count = "count(*)" if table == "costed" else "sum(unpriced)"
        unpriced = "NOT priced" if table == "costed" else "unpriced > 0"
        rows = self._rows(f"""
            SELECT provider, model, interactions, count(*) OVER () AS all_models,
                   sum(interactions) OVER () AS everything
            FROM (SELECT provider, model, {count} AS interactions FROM {table} WHERE {where} AND {unpriced}
                  GROUP BY 1, 2)
            ORDER BY interactions DESC, provider, model LIMIT ?""", [*params, limit])
        shown = [{"provider": r["provider"], "model": r["model"], "interactions": r["interactions"]} for r in rows]
        everything = rows[0]["everything"] if rows else 0
        return {"models": shown, "other_models": rows[0]["all_models"] - len(rows) if rows else 0,
                "other_interactions": everything - sum(r["interactions"] for r in shown)}

    def totals(self, f: Filters, *, unpriced_limit: int = UNPRICED_SHOWN) -> dict:
        table, _, where, params = self._usage_source(f, "hour")
        sums = _RAW_SUMS if table == "costed" else _ROLLUP_SUMS
        [totals] = self._rows(f"SELECT {sums} FROM {table} WHERE {where}", params)
        unpriced = self.unpriced_models(f, limit=unpriced_limit)
        totals["unpriced_models"] = unpriced["models"]
        totals["unpriced_models_other"] = {"models": unpriced["other_models"],
                                           "interactions": unpriced["other_interactions"]}
        where, params = self._raw_where(f)
        [people] = self._rows(f"SELECT {_PERCENTILES}, count(DISTINCT user_id) AS active_users "
                              f"FROM interaction WHERE {where}", params)
        return {**totals, **_latency_columns(people), "active_users": people["active_users"],
                "sessions": self._session_count(f)}

    def _session_count(self, f: Filters) -> int:
        """Sessions with activity in the range; the session rollup answers unless a filter needs raw rows."""
        if f.provider is None and f.model is None and f.user_id is None:
            overlap = ("ended_at >= ? AND started_at < ?", [f.start_ms, f.end_ms])
            sql, params = where(f, time=overlap, app="app_id").parts()
            return self._rows(f"SELECT count(*) AS n FROM session_stats WHERE {sql}", params)[0]["n"]
        sql, params = self._raw_where(f)
        return self._rows(f"SELECT count(DISTINCT session_id) AS n FROM interaction WHERE {sql}", params)[0]["n"]

    def _raw_where(self, f: Filters) -> tuple[str, list]:
        return interaction_where(f).parts()

    def _latency_by_model(self, f: Filters, models: list[dict]) -> list[dict]:
        if not models:
            return []
        where, params = self._raw_where(f)
        rows = self._rows(f"SELECT i.provider, i.model, {_PERCENTILES} "
                          f"FROM (SELECT provider, model, latency_ms FROM interaction WHERE {where}) i "
                          f"SEMI JOIN (SELECT unnest(?) AS provider, unnest(?) AS model) m "
                          f"ON m.provider = i.provider AND m.model IS NOT DISTINCT FROM i.model "
                          f"GROUP BY i.provider, i.model",
                          [*params, [m["provider"] for m in models], [m["model"] for m in models]])
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
        days = ("bucket >= ? AND bucket <= ?", [*day_bounds(f.start_ms, f.end_ms, self._zone)])
        return where(f, time=days, app="app_id", user="user_id").parts()

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
