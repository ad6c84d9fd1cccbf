"""The filter bar shared by every page: date range presets or custom days, app, provider, model and user, kept
in the URL so that a view can be bookmarked and shared."""

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from tally.analytics.filters import FilterError, Filters, parse_filters, parse_instant
from tally.analytics.queries import series_buckets

# preset → (label, days; 0 means the last 24 hours by the hour)
PRESETS = {"24h": ("Last 24 hours", 0), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30),
           "90d": ("Last 90 days", 90)}
DEFAULT_RANGE = "30d"
HOUR_MS = 3_600_000
# The finest granularity whose buckets over the range stay within the figure's width (buckets that can hold data:
# a range reaching into the far future costs nothing); beyond them, months.
CHART_BUCKETS = (("hour", 52), ("day", 202), ("week", 202))  # two local days of 25 hours by the hour


@dataclass(frozen=True)
class View:
    """What the URL asks for. `filters` is the analytics range; `previous` as many local days (or, for the last
    24 hours, hours) just before it."""

    range: str  # a PRESETS key, or "custom"
    start_day: str | None  # YYYY-MM-DD, for custom ranges
    end_day: str | None
    app: str | None
    provider: str | None
    model: str | None
    user: str | None
    filters: Filters
    previous: Filters
    granularity: str  # hour, day, week or month

    @property
    def label(self) -> str:
        if self.range == "custom":
            return f"{self.start_day} to {self.end_day}"
        return PRESETS[self.range][0]

    def params(self, **changes) -> dict[str, str]:
        """The URL parameters of this view with `changes` applied; empty and default values are left out."""
        values = {"range": self.range, "from": self.start_day, "to": self.end_day, "app": self.app,
                  "provider": self.provider, "model": self.model, "user": self.user, **changes}
        if values["range"] != "custom":
            values["from"] = values["to"] = None
        if values["range"] == DEFAULT_RANGE:
            values["range"] = None
        return {key: str(value) for key, value in values.items() if value not in (None, "")}

    def query(self, **changes) -> str:
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""


def parse_view(query: dict[str, str], *, zone: ZoneInfo, now_ms: int, apps: frozenset[int] | None) -> View:
    """The view of a reader limited to `apps` (None: every app). Raises FilterError naming the parameter when the
    URL holds something that is not a valid filter."""
    start_day, end_day = query.get("from") or None, query.get("to") or None
    preset = query.get("range") or ("custom" if start_day or end_day else DEFAULT_RANGE)
    if preset == "custom":
        today = datetime.fromtimestamp(now_ms / 1000, zone).date()
        end_day = _day("to", end_day).isoformat() if end_day else today.isoformat()
        start_day = _day("from", start_day).isoformat() if start_day else _days_before(end_day, 29)
        first, last = _day("from", start_day), _day("to", end_day)
        start, end, days = start_day, end_day, (last - first).days + 1
    elif preset in PRESETS:
        start, end = _preset_range(preset, zone, now_ms)
        days = PRESETS[preset][1]
    else:
        raise FilterError("range", f"unknown range {preset!r}; use one of: {', '.join(PRESETS)}, custom")
    options = {name: query.get(name) or None for name in ("app", "provider", "model", "user")}
    filters = parse_filters(start=start, end=end, zone=zone, now_ms=now_ms, apps=apps, **options)
    # Local days are 23 or 25 hours when the clocks change: the previous period is as many whole local days, not
    # as many hours, so that it starts at midnight too.
    if days:
        before = parse_instant("from", _days_before(start, days), zone, end=False)
    else:
        before = filters.start_ms - (filters.end_ms - filters.start_ms)
    previous = replace(filters, start_ms=max(before, 0), end_ms=filters.start_ms)
    granularity = next((unit for unit, most in CHART_BUCKETS if series_buckets(filters, unit, now_ms) <= most),
                       "month")
    return View(preset, start_day if preset == "custom" else None, end_day if preset == "custom" else None,
                filters=filters, previous=previous, granularity=granularity, **options)


def _day(field: str, text: str) -> date:
    try:
        if len(text) == 10:  # fromisoformat also reads 20240501 and 2024-W18-3, which the URL should not hold
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise FilterError(field, f"{text[:40]!r} is not a day (YYYY-MM-DD)")


def _days_before(day: str, days: int) -> str:
    try:
        return (date.fromisoformat(day) - timedelta(days=days)).isoformat()
    except OverflowError:
        return date.min.isoformat()


def _preset_range(preset: str, zone: ZoneInfo, now_ms: int) -> tuple[str, str]:
    """Whole hours or local days ending with the current one, so every bucket shown is complete or current."""
    days = PRESETS[preset][1]
    local_now = datetime.fromtimestamp(now_ms / 1000, zone)
    if days == 0:  # local hours: in a zone such as Asia/Kolkata they start at half past, UTC
        hour_end = int(local_now.replace(minute=0, second=0, microsecond=0).timestamp() * 1000) + HOUR_MS
        return str(hour_end - 24 * HOUR_MS), str(hour_end)
    today = local_now.date()
    return (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
