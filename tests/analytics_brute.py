"""A slow, obviously-correct recomputation of the rollups from raw store rows, to check DuckDB against."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tally.analytics.prices import PriceTable


def quantile(values: list[float | None], q: float) -> float | None:
    """As DuckDB's quantile_cont: unknown values (None) are left out; of none known, None."""
    ordered = sorted(value for value in values if value is not None)
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cost_of(row, prices: PriceTable) -> float | None:
    key = prices.resolve(row.provider, row.model or "")
    if key is None:
        return None
    rows = [p for p in prices.prices if (p.provider, p.model) == key and p.effective_ms <= row.request_at]
    if not rows:
        return None
    p = max(rows, key=lambda p: p.effective_ms)
    prompt, cached = row.prompt_tokens or 0, row.cached_prompt_tokens or 0
    return ((prompt - cached) * (p.input_per_mtok or 0) / 1e6
            + cached * (p.cached_input_per_mtok if p.cached_input_per_mtok is not None else p.input_per_mtok or 0) / 1e6
            + (row.completion_tokens or 0) * (p.output_per_mtok or 0) / 1e6 + row.image_count * (p.per_image or 0))


def day_rollup(engine, app_id: int, zone: str, prices: PriceTable) -> dict:
    """{(local day, provider, model): measures} for one app, straight from the store."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM interaction WHERE app_id = :a"), {"a": app_id}).all()
    groups = defaultdict(list)
    for row in rows:
        local = datetime.fromtimestamp(row.request_at / 1000, UTC).astimezone(ZoneInfo(zone))
        groups[(local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0), row.provider,
                row.model or "")].append(row)
    result = {}
    for key, members in groups.items():
        costs = [cost_of(r, prices) for r in members]
        latencies = [r.latency_ms for r in members]

        def by_source(source: str, column: str, members=members) -> int:
            return sum(getattr(r, column) or 0 for r in members if r.usage_source == source)

        result[key] = {
            "interactions": len(members), "errors": sum(bool(r.is_error) for r in members),
            "reported_prompt_tokens": by_source("reported", "prompt_tokens"),
            "reported_completion_tokens": by_source("reported", "completion_tokens"),
            "estimated_prompt_tokens": by_source("estimated", "prompt_tokens"),
            "estimated_completion_tokens": by_source("estimated", "completion_tokens"),
            "absent_usage": sum(r.usage_source == "absent" for r in members),
            "cost": round(sum(c for c in costs if c is not None), 9),
            "priced": sum(c is not None for c in costs), "unpriced": sum(c is None for c in costs),
            "latency_p50": _rounded(quantile(latencies, 0.5)), "latency_p95": _rounded(quantile(latencies, 0.95)),
        }
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def session_rollup(engine, app_id: int) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT session_id, count(*), min(request_at), max(response_at) FROM interaction "
                                 "WHERE app_id = :a GROUP BY session_id"), {"a": app_id}).all()
    return {session: (turns, start, end) for session, turns, start, end in rows}


def hour_key(ms: int, zone: str) -> tuple[datetime, timedelta]:
    """The local hour holding an instant: its wall-clock name and the UTC offset then. The two hours the clocks
    going back name alike differ in offset, and an hour a change cuts in two (Lord Howe) is two keys."""
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(zone))
    return local.replace(tzinfo=None, minute=0, second=0, microsecond=0), local.utcoffset()


def day_key(ms: int, zone: str) -> datetime:
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(zone))
    return local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)


def hour_began(ms: int, zone: str) -> int:
    """The first instant of the hour holding `ms`, walked back a minute at a time (clocks change on whole minutes)."""
    key, moment = hour_key(ms, zone), ms - ms % 60_000
    while hour_key(moment - 60_000, zone) == key:
        moment -= 60_000
    return moment


def keys_touched(start_ms: int, end_ms: int, key, zone: str) -> set:
    """The keys of every instant in [start_ms, end_ms): clocks change on whole minutes, so every hour or day that
    overlaps the range holds its start, its last instant or one of the whole minutes between."""
    moments = {start_ms, end_ms - 1, *range(start_ms - start_ms % 60_000 + 60_000, end_ms, 60_000)}
    return {key(moment, zone) for moment in moments}


def offset_name(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
