"""Parsing the read API's filters and cursors; every mistake is a 400 naming the parameter."""

import base64
import binascii
import contextlib
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tally.store.limits import MAX_EPOCH_MS, MAX_ID

DEFAULT_DAYS = 30
END_OF_TIME_MS = MAX_EPOCH_MS + 1  # the exclusive end of every range: DuckDB's timestamps end there
_MAX_CURSOR_CHARS = 400  # a cursor this API hands out is under 100


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
    apps: frozenset[int] | None = None  # the reader's app restriction (a token's or account's); None: every app


def all_time(**dimensions) -> Filters:
    """Every interaction ever (to the end of year 9999, which DuckDB's timestamps still hold)."""
    return Filters(0, END_OF_TIME_MS, **dimensions)


def ascii_digits(text: str) -> bool:
    """Only 0-9: `str.isdigit` also accepts `²` and other scripts' digits, which `int()` then refuses."""
    return text.isascii() and text.isdigit()


def parse_instant(field: str, text: str, zone: ZoneInfo, *, end: bool) -> int:
    """Milliseconds for `2024-05-01` (a whole local day), an ISO datetime (naive means local), or epoch ms.

    Epoch ms must lie in [0, MAX_EPOCH_MS]; a date or datetime (years 1 to 9999) outside that span is brought
    to its edge, so `to=9999-12-31` means "to the end" and `from=1900-01-01` "from the start"."""
    text = text.strip()
    if ascii_digits(text):
        if len(text) > len(str(MAX_EPOCH_MS)) or int(text) > MAX_EPOCH_MS:
            raise FilterError(field, f"epoch milliseconds must be at most {MAX_EPOCH_MS} (9999-12-31)")
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                if day == date.max:
                    return END_OF_TIME_MS
                day += timedelta(days=1)
            moment = datetime(day.year, day.month, day.day, tzinfo=zone)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(field, f"{text[:40]!r} is not a date (YYYY-MM-DD), an ISO 8601 datetime or epoch "
                                 "milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    # Aware datetimes subtract as timedeltas, so even 9999-12-31T23:59-14:00 has an epoch value to clamp.
    return min(max(int(moment.timestamp() * 1000), 0), END_OF_TIME_MS)


def parse_filters(*, start: str | None, end: str | None, app: str | None, provider: str | None,
                  model: str | None, user: str | None, zone: ZoneInfo, now_ms: int,
                  apps: frozenset[int] | None) -> Filters:
    """The filters of a request by a reader limited to `apps` (None: every app)."""
    end_ms = parse_instant("to", end, zone, end=True) if end else now_ms + 1
    start_ms = (parse_instant("from", start, zone, end=False) if start
                else max(end_ms - DEFAULT_DAYS * 86_400_000, 0))
    if start_ms >= end_ms:
        raise FilterError("from", "`from` must be before `to`")
    return Filters(start_ms, end_ms, parse_id("app", app), provider or None, model, parse_id("user", user), apps)


def parse_id(field: str, text: str | None) -> int | None:
    """A numeric id as the store hands them out (1 to MAX_ID), or None for an empty parameter."""
    if text is None or text == "":
        return None
    if not ascii_digits(text) or len(text) > len(str(MAX_ID)) or not 1 <= int(text) <= MAX_ID:
        raise FilterError(field, f"must be a numeric id from 1 to {MAX_ID}, got {text[:40]!r}")
    return int(text)


def choice(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise FilterError(field, f"unknown {field} {value[:40]!r}; use one of: {', '.join(allowed)}")
    return value


def encode_cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# What a cursor may hold, per position: "int" a BIGINT (times, ids, counts), "number" a finite cost.
INT, NUMBER = "int", "number"


def decode_cursor(text: str | None, kinds: tuple[str, ...]) -> list | None:
    """The values of a cursor `encode_cursor` made, checked against the kinds its listing keys on."""
    if not text:
        return None
    values = None
    if len(text) <= _MAX_CURSOR_CHARS:
        with contextlib.suppress(ValueError, UnicodeDecodeError, binascii.Error):
            values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    if not (isinstance(values, list) and len(values) == len(kinds)
            and all(_fits(value, kind) for value, kind in zip(values, kinds))):
        raise FilterError("cursor", "is not a cursor this API handed out")
    return values


def _fits(value, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_ID - 1 <= value <= MAX_ID
    return kind == NUMBER and isinstance(value, float) and math.isfinite(value)
