"""A slow, obviously-correct recomputation of the rollups from raw store rows, to check DuckDB against."""

from collections import defaultdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tally.analytics.prices import PriceTable


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
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
        local = datetime.fromtimestamp(row.request_at / 1000, timezone.utc).astimezone(ZoneInfo(zone))
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
            "latency_p50": round(quantile(latencies, 0.5), 6), "latency_p95": round(quantile(latencies, 0.95), 6),
        }
    return result


def session_rollup(engine, app_id: int) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT session_id, count(*), min(request_at), max(response_at) FROM interaction "
                                 "WHERE app_id = :a GROUP BY session_id"), {"a": app_id}).all()
    return {session: (turns, start, end) for session, turns, start, end in rows}
