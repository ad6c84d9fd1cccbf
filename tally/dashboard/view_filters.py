"""The filter bar shared by every page: date range presets or custom days, app, provider, model and user, kept
in the URL so that a view can be bookmarked and shared."""

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from tally.analytics.filters import FilterError, Filters, parse_filters

# preset → (label, days; 0 means the last 24 hours by the hour)
PRESETS = {"24h": ("Last 24 hours", 0), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30),
           "90d": ("Last 90 days", 90)}
DEFAULT_RANGE = "30d"
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class View:
    """What the URL asks for. `filters` is the analytics range; `previous` the same length just before it."""

    range: str  # a PRESETS key, or "custom"
    start_day: str | None  # YYYY-MM-DD, for custom ranges
    end_day: str | None
    app: str | None
    provider: str | None
    model: str | None
    user: str | None
    filters: Filters
    previous: Filters
    granularity: str  # hour or day

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


def parse_view(query: dict[str, str], *, zone: ZoneInfo, now_ms: int) -> View:
    """Raises FilterError naming the parameter when the URL holds something that is not a valid filter."""
    start_day, end_day = query.get("from") or None, query.get("to") or None
    preset = query.get("range") or ("custom" if start_day or end_day else DEFAULT_RANGE)
    if preset == "custom":
        today = datetime.fromtimestamp(now_ms / 1000, zone).date()
        end_day = end_day or today.isoformat()
        start_day = start_day or (_day("to", end_day) - timedelta(days=29)).isoformat()
        for field, value in (("from", start_day), ("to", end_day)):
            _day(field, value)
        start, end = start_day, end_day
    elif preset in PRESETS:
        start, end = _preset_range(preset, zone, now_ms)
    else:
        raise FilterError("range", f"unknown range {preset!r}; use one of: {', '.join(PRESETS)}, custom")
    options = {name: query.get(name) or None for name in ("app", "provider", "model", "user")}
    filters = parse_filters(start=start, end=end, zone=zone, now_ms=now_ms, **options)
    span = filters.end_ms - filters.start_ms
    previous = replace(filters, start_ms=filters.start_ms - span, end_ms=filters.start_ms)
    granularity = "hour" if span <= 2 * 24 * HOUR_MS else "day"
    return View(preset, start_day if preset == "custom" else None, end_day if preset == "custom" else None,
                filters=filters, previous=previous, granularity=granularity, **options)


def _day(field: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(field, f"{text!r} is not a day (YYYY-MM-DD)") from None


def _preset_range(preset: str, zone: ZoneInfo, now_ms: int) -> tuple[str, str]:
    """Whole hours or local days ending with the current one, so every bucket shown is complete or current."""
    days = PRESETS[preset][1]
    local_now = datetime.fromtimestamp(now_ms / 1000, zone)
    if days == 0:  # local hours: in a zone such as Asia/Kolkata they start at half past, UTC
        hour_end = int(local_now.replace(minute=0, second=0, microsecond=0).timestamp() * 1000) + HOUR_MS
        return str(hour_end - 24 * HOUR_MS), str(hour_end)
    today = local_now.date()
    return (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
