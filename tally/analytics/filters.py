"""Parsing the read API's filters and cursors; every mistake is a 400 naming the parameter."""

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DEFAULT_DAYS = 30


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Filters:
    start_ms: int  # inclusive
    end_ms: int  # exclusive
    app_id: int | None = None
    provider: str | None = None
    model: str | None = None
    user_id: int | None = None


def all_time(**dimensions) -> Filters:
    """Every interaction ever (to the end of year 9999, which DuckDB's timestamps still hold)."""
    return Filters(0, 253_402_300_800_000, **dimensions)


def parse_instant(field: str, text: str, zone: ZoneInfo, *, end: bool) -> int:
    """Milliseconds for `2024-05-01` (a whole local day), an ISO datetime (naive means local), or epoch ms."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(field, f"{text!r} is not a date (YYYY-MM-DD), an ISO 8601 datetime or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(moment.timestamp() * 1000)


def parse_filters(*, start: str | None, end: str | None, app: str | None, provider: str | None,
                  model: str | None, user: str | None, zone: ZoneInfo, now_ms: int) -> Filters:
    end_ms = parse_instant("to", end, zone, end=True) if end else now_ms + 1
    start_ms = parse_instant("from", start, zone, end=False) if start else end_ms - DEFAULT_DAYS * 86_400_000
    if start_ms >= end_ms:
        raise FilterError("from", "`from` must be before `to`")
    return Filters(start_ms, end_ms, _integer("app", app), provider or None, model if model is not None else None,
                   _integer("user", user))


def _integer(field: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise FilterError(field, f"must be a numeric id, got {text!r}")
    return int(text)


def choice(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise FilterError(field, f"unknown {field} {value!r}; use one of: {', '.join(allowed)}")
    return value


def encode_cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(text: str | None, size: int) -> list | None:
    if not text:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != size:
        raise FilterError("cursor", "is not a cursor this API handed out")
    return values
