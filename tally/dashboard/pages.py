"""What each analytics page shows: the queries it runs and the tiles, tables and figures built from them."""

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from tally.analytics import listings
from tally.analytics.filters import all_time
from tally.analytics.local_time import hour_buckets, local_moment
from tally.analytics.service import Analytics
from tally.dashboard import figures
from tally.dashboard.formatting import change, compact, duration_ms, money, percent
from tally.dashboard.view_filters import View

PAGE_SIZE = 50
MODEL_ROWS = 50  # rows of the Models table; the rest are summed in an "other models" row
FIGURE_MODELS = 8  # models drawn in their own colour or bar; the rest are drawn together as "other models"
UNPRICED_NAMED = 10  # unpriced models named in a callout; the rest are counted


def _tile(name: str, value: str, current, previous, *, better: str = "up", hint: str | None = None) -> dict:
    """A headline number with its change against the previous period; `better` says which way is good news."""
    delta = change(current, previous)
    if delta is not None:
        delta["tone"] = "neutral" if delta["direction"] == "flat" else (
            "good" if delta["direction"] == better else "bad")
    return {"name": name, "value": value, "change": delta, "hint": hint}


def _error_rate(totals: dict) -> float | None:
    return totals["errors"] / totals["interactions"] if totals["interactions"] else None


def _tokens(totals: dict) -> int:
    return totals["prompt_tokens"] + totals["completion_tokens"]


def _dates(view: View, zone: ZoneInfo) -> tuple[str, str]:
    """The range as a date axis shows it: from the middle of the first bucket to the middle of the last."""
    half = {"hour": 1_800_000, "day": 43_200_000, "week": 302_400_000, "month": 1_296_000_000}[view.granularity]
    first, last = (local_moment(ms, zone.key).strftime("%Y-%m-%d %H:%M")
                   for ms in (view.filters.start_ms - half, view.filters.end_ms - half))
    return first, last


def _span(view: View, zone: ZoneInfo) -> figures.Span:
    """The range as the time axis of the usage charts shows it: every hour by name, or dates."""
    if view.granularity == "hour":
        return figures.hour_names(hour_buckets(view.filters.start_ms, view.filters.end_ms, zone.key))
    return _dates(view, zone)


def overview(analytics: Analytics, view: View) -> dict:
    queries, zone = analytics.queries(), analytics.settings.analytics_timezone
    now, before = queries.totals(view.filters, unpriced_limit=UNPRICED_NAMED), queries.totals(view.previous)
    series = queries.usage_series(view.filters, view.granularity)
    axis: dict[str, Any] = {"granularity": view.granularity, "timezone": zone, "span": _span(view, analytics.zone)}
    users_by = "day" if view.granularity == "hour" else view.granularity
    tokens = _tokens(now)
    estimated = now["estimated_tokens"] / tokens if tokens else 0
    tiles = [
        _tile("Interactions", compact(now["interactions"]), now["interactions"], before["interactions"]),
        _tile("Tokens", compact(tokens), tokens, _tokens(before),
              hint=f"{percent(estimated)} estimated" if now["estimated_tokens"] else "all reported"),
        _tile("Cost", money(now["cost"]), now["cost"], before["cost"], better="down",
              hint=f"{now['unpriced']:,} unpriced" if now["unpriced"] else "all priced"),
        _tile("Active users", compact(now["active_users"]), now["active_users"], before["active_users"]),
        _tile("Sessions", compact(now["sessions"]), now["sessions"], before["sessions"]),
        _tile("Error rate", percent(_error_rate(now)), _error_rate(now), _error_rate(before), better="down"),
        _tile("p95 latency", duration_ms(now.get("latency_p95")), now.get("latency_p95"),
              before.get("latency_p95"), better="down"),
    ]
    charts = [
        figures.tokens_by_model(queries.usage_series_by_model(view.filters, view.granularity, top=FIGURE_MODELS),
                                **axis),
        figures.cost_over_time(series, **axis),
        figures.interactions_and_errors(series, **axis),
        figures.latency(queries.latency_series(view.filters, view.granularity), **axis),
        figures.active_users(queries.active_users(view.filters, users_by), granularity=users_by, timezone=zone,
                             span=_dates(view, analytics.zone)),
    ]
    return {"tiles": tiles, "figures": charts, "unpriced_models": now["unpriced_models"],
            "unpriced_other": now["unpriced_models_other"],
            "empty": now["interactions"] == 0 and before["interactions"] == 0}


def models(analytics: Analytics, view: View) -> dict:
    queries = analytics.queries()
    found = queries.usage_by_model(view.filters, limit=MODEL_ROWS)
    rows, other = found["models"], found["other"]
    for row in rows + ([other] if other else []):
        row["tokens"] = row["prompt_tokens"] + row["completion_tokens"]
        row["estimated_share"] = row["estimated_tokens"] / row["tokens"] if row["tokens"] else 0
        row["error_rate"] = _error_rate(row)
    everything = rows + ([other] if other else [])
    return {"rows": rows, "other": other, "unpriced": queries.unpriced_models(view.filters, limit=UNPRICED_NAMED),
            "figures": [figures.model_breakdown(rows, other, top=FIGURE_MODELS * 2)],
            "estimated_share": (sum(r["estimated_tokens"] for r in everything) / total
                                if (total := sum(r["tokens"] for r in everything)) else 0)}


def users(analytics: Analytics, view: View, *, search: str | None, sort: str, after: list | None) -> dict:
    page = listings.users(analytics.warehouse.cursor(), f=view.filters, zone=analytics.settings.analytics_timezone,
                          search=search, sort=sort, after=after, limit=PAGE_SIZE)
    return {"page": page, "search": search or "", "sort": sort}


def user(analytics: Analytics, view: View, user_id: int, *, after: list | None) -> dict | None:
    cursor, zone = analytics.warehouse.cursor(), analytics.settings.analytics_timezone
    found = listings.users(cursor, f=all_time(user_id=user_id, apps=view.filters.apps), zone=zone, search=None,
                           sort="last_seen", after=None, limit=1)["items"]
    if not found:
        return None
    mine = replace(view.filters, user_id=user_id)
    queries = analytics.queries()
    usage = queries.usage_series_by_model(mine, view.granularity, top=FIGURE_MODELS)
    return {"profile": found[0], "totals": queries.totals(mine),
            "figures": [figures.tokens_by_model(usage, granularity=view.granularity, timezone=zone,
                                                span=_span(view, analytics.zone))],
            "sessions": listings.sessions(cursor, f=mine, after=after, limit=PAGE_SIZE)}


def sessions(analytics: Analytics, view: View, *, after: list | None) -> dict:
    return {"page": listings.sessions(analytics.warehouse.cursor(), f=view.filters, after=after, limit=PAGE_SIZE)}


def interactions(analytics: Analytics, view: View, *, session_id: int | None, after: list | None) -> dict:
    page = listings.interactions(analytics.warehouse.cursor(), f=view.filters, session_id=session_id, after=after,
                                 limit=PAGE_SIZE)
    return {"page": page, "session_id": session_id}
