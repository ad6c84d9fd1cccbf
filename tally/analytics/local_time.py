"""Local hours and days as integer arithmetic, in SQL and identically in Python: a zone's UTC offset is constant
between its transitions, so `(epoch_ms + offset) // unit * unit` is the local bucket, about ten times cheaper per
row than DuckDB's `timezone()` lookup (measured at 10M rows: 44 ms against 626 ms).

An hour is keyed by the instant its real time starts, not by its wall-clock name: the hour the clocks go back
through is named twice (02:00 in Paris on the last Sunday of October) and each occurrence stays a bucket of its own.
"""

from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

HOUR_MS = 3_600_000
UNIT_MS = {"hour": HOUR_MS, "day": 86_400_000}
_SHIFT_MS = 365_000 * 86_400_000
_FIRST, _LAST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
_STEP = timedelta(days=7)  # no zone has changed its offset twice within a week since 1970
_EPOCH = datetime(1970, 1, 1)
_LAST_DAY_MS = int((datetime(9999, 12, 31) - _EPOCH).total_seconds() * 1000)  # the last naive day Python holds
_LAST_HOUR_MS = _LAST_DAY_MS + 23 * HOUR_MS


def _offset_ms(zone: ZoneInfo, moment: datetime) -> int:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds() * 1000)


@lru_cache(maxsize=16)
def utc_offsets(zone_name: str) -> tuple[tuple[int, int], ...]:
    """(from epoch ms, offset ms) for each stretch of constant offset, 1970 to 2100; the first starts at 0."""
    zone = ZoneInfo(zone_name)
    periods = [(0, _offset_ms(zone, _FIRST))]
    moment = _FIRST
    while moment < _LAST:
        following = moment + _STEP
        if _offset_ms(zone, following) != periods[-1][1]:
            low, high = int(moment.timestamp()), int(following.timestamp())
            while high - low > 1:  # bisect, in whole seconds, to the first second of the new offset
                middle = (low + high) // 2
                if _offset_ms(zone, datetime.fromtimestamp(middle, UTC)) == periods[-1][1]:
                    low = middle
                else:
                    high = middle
            periods.append((high * 1000, _offset_ms(zone, datetime.fromtimestamp(high, UTC))))
        moment = following
    return tuple(periods)


@lru_cache(maxsize=16)
def _starts(zone_name: str) -> tuple[int, ...]:
    return tuple(start for start, _ in utc_offsets(zone_name))


def _case_tree(column: str, zone_name: str, start_ms: int, end_ms: int, leaf: Callable[[int], str]) -> str:
    """A balanced CASE over the zone's transitions in [start_ms, end_ms] (usually none or one, so the expression
    is tiny), with `leaf(index into utc_offsets)` as the SQL for instants of that stretch."""
    every = utc_offsets(zone_name)
    indexes = [index for index, (start, _) in enumerate(every)
               if (index == 0 or start <= end_ms) and (index + 1 == len(every) or every[index + 1][0] > start_ms)]

    def tree(low: int, high: int) -> str:
        if high - low == 1:
            return leaf(indexes[low])
        middle = (low + high) // 2
        return (f"CASE WHEN {column} < {every[indexes[middle]][0]} THEN {tree(low, middle)} "
                f"ELSE {tree(middle, high)} END")
    return tree(0, len(indexes))


def local_bucket_sql(column: str, unit: str, zone_name: str, start_ms: int, end_ms: int) -> str:
    """SQL for the local hour or day (a naive TIMESTAMP, its wall-clock name) of the epoch-ms `column`, exact for
    instants in the range and between 1970 and 2100 (before, the 1970 offset applies; after, the last one)."""
    size = UNIT_MS[unit]
    # `//` truncates toward zero; shifting by whole days (a thousand years of them) keeps the dividend positive,
    # so that it floors for instants before 1970 too.
    offset = _case_tree(column, zone_name, start_ms, end_ms, lambda index: str(utc_offsets(zone_name)[index][1]))
    return f"epoch_ms(({column} + {offset} + {_SHIFT_MS}) // {size} * {size} - {_SHIFT_MS})"


def hour_start_sql(column: str, zone_name: str, start_ms: int, end_ms: int) -> str:
    """SQL for the epoch ms at which the local hour of the epoch-ms `column` starts in real time, exact as
    `local_bucket_sql` is: the key of an hour bucket, the same as `hour_start` computes in Python."""
    every = utc_offsets(zone_name)

    def leaf(index: int) -> str:
        start, offset = every[index]
        hour = f"({column} + {offset + _SHIFT_MS}) // {HOUR_MS} * {HOUR_MS} - {_SHIFT_MS + offset}"
        # A change that falls inside a local hour (Lord Howe moves by half an hour) cuts that hour in two: the part
        # after the change starts at the change.
        return f"greatest({hour}, {start})" if index and (start + offset) % HOUR_MS else hour
    return _case_tree(column, zone_name, start_ms, end_ms, leaf)


def _stretch(ms: int, zone_name: str) -> tuple[int, int, int]:
    """(index into utc_offsets, start, offset) of the stretch holding the instant `ms`."""
    index = max(bisect_right(_starts(zone_name), ms) - 1, 0)
    return index, *utc_offsets(zone_name)[index]


def hour_start(ms: int, zone_name: str) -> int:
    """The epoch ms at which the local hour holding `ms` starts in real time (see `hour_start_sql`)."""
    index, start, offset = _stretch(ms, zone_name)
    hour = (ms + offset) // HOUR_MS * HOUR_MS - offset
    return max(hour, start) if index else hour


def local_hour(start_ms: int, zone_name: str) -> tuple[datetime, int]:
    """The wall-clock name (naive) and the UTC offset (ms) of the hour bucket that starts at `start_ms`."""
    _, _, offset = _stretch(start_ms, zone_name)
    return _EPOCH + timedelta(milliseconds=(start_ms + offset) // HOUR_MS * HOUR_MS), offset


def local_day(ms: int, zone_name: str) -> datetime:
    """The local day (naive midnight) holding the instant `ms`, as the day rollup counts it; instants past
    9999-12-30 UTC, where no data can be, give 9999-12-31."""
    _, _, offset = _stretch(ms, zone_name)
    return _EPOCH + timedelta(milliseconds=min((ms + offset) // 86_400_000 * 86_400_000, _LAST_DAY_MS))


def local_moment(ms: int, zone_name: str) -> datetime:
    """The wall-clock time (naive) at the instant `ms`; past the last minute of 9999-12-31, which Python's dates
    cannot name, that minute."""
    _, _, offset = _stretch(ms, zone_name)
    return _EPOCH + timedelta(milliseconds=min(ms + offset, _LAST_HOUR_MS + 59 * 60_000))


def day_bounds(start_ms: int, end_ms: int, zone_name: str) -> tuple[datetime, datetime]:
    """The first and the last local day overlapping [start_ms, end_ms), as the day rollup names them."""
    return local_day(start_ms, zone_name), local_day(end_ms - 1, zone_name)


def hour_buckets(start_ms: int, end_ms: int, zone_name: str) -> list[tuple[int, datetime, int]]:
    """(start, wall-clock name, offset ms) of every hour bucket overlapping [start_ms, end_ms), oldest first."""
    buckets = []
    moment = hour_start(start_ms, zone_name)
    while moment < end_ms:
        if moment + _stretch(moment, zone_name)[2] > _LAST_HOUR_MS:
            break  # named in year 10000, past Python's dates (and every stored time): the axis ends with 9999
        buckets.append((moment, *local_hour(moment, zone_name)))
        index, _, offset = _stretch(moment, zone_name)
        following = (moment + offset) // HOUR_MS * HOUR_MS - offset + HOUR_MS
        if index + 1 < len(utc_offsets(zone_name)):
            following = min(following, utc_offsets(zone_name)[index + 1][0])
        moment = following
    return buckets


def offset_text(offset_ms: int) -> str:
    """`+05:30` for an offset of five and a half hours east of UTC."""
    minutes = abs(offset_ms) // 60_000
    return f"{'-' if offset_ms < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
