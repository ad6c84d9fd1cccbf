"""Schedule timing: a 5-field crontab read as cron reads it, and the last complete period a run exports.

The period's length follows from the crontab, the coarsest restricted field deciding: a month field other than
`*` exports the previous year; else a day-of-month field, the previous month; else a day-of-week field, the
previous ISO week (Monday to Sunday); else an hour field, the previous day; else the previous hour. Every
period is then covered by at least one run (a nightly `0 2 * * *` exports yesterday, an hourly `5 * * * *` the
hour before), counted in the schedule's time zone.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from tally.analytics.local_time import HOUR_MS, hour_start

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Period:
    label: str  # in file names: 2026-11-24T13 (2026-10-25T02+0200 for a repeated hour), 2026-11-24, 2026-W47, …
    start_ms: int  # inclusive
    end_ms: int  # exclusive


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """APScheduler's trigger for a standard crontab; ValueError says what is wrong with it."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab has 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        # cron runs on either day, APScheduler only on days matching both: refuse rather than differ.
        raise ValueError("set the day of month or the day of week, not both (use two schedules)")
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=zone)


def _weekdays(field: str) -> str:
    """Cron counts weekdays from Sunday = 0 (7 is Sunday too), APScheduler 3 from Monday = 0: names avoid both."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        body, slash, step = part.partition("/")
        if slash and not step.isdigit() or step == "0":
            raise ValueError(f"bad step in day of week {part!r}")
        low, _, high = ("0-7" if body == "*" else body).partition("-")
        first = _day_number(low)
        last = 7 if high == "sun" else _day_number(high) if high else (7 if slash else first)  # mon-sun
        if first > last:
            raise ValueError(f"day-of-week range {part!r} runs backwards")
        days.update(number % 7 for number in range(first, last + 1, int(step or 1)))
    return ",".join(_DAY_NAMES[number] for number in sorted(days))


def _day_number(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text[:3] in _DAY_NAMES and len(text) == 3:
        return _DAY_NAMES.index(text)
    raise ValueError(f"unknown day of week {text!r}; use 0-7 (0 and 7 are Sunday) or sun-sat")


def granularity(expression: str) -> str:
    _, hour, day, month, weekday = expression.split()
    for field, unit in ((month, "year"), (day, "month"), (weekday, "week"), (hour, "day")):
        if field != "*":
            return unit
    return "hour"


def last_period(unit: str, zone: ZoneInfo, now: datetime) -> Period:
    """The last whole `unit` that ended at or before `now`, in `zone`."""
    if unit == "hour":
        # Hours as the hour rollup keeps them, by the instant each starts. The period starts at the hour holding
        # the instant an hour before its end, so that a change by half an hour (Lord Howe), whose hour is cut in
        # two and whose cron runs once, exports both halves with their neighbour rather than leave one out.
        end_ms = hour_start(_ms(now), zone.key)
        start_ms = hour_start(end_ms - HOUR_MS, zone.key)
        start = datetime.fromtimestamp(start_ms / 1000, zone)
        # The hour the clocks go back through comes twice: its offset tells the two apart (their files too).
        repeated = start.replace(fold=1 - start.fold).utcoffset() != start.utcoffset()
        return Period(start.strftime("%Y-%m-%dT%H%z" if repeated else "%Y-%m-%dT%H"), start_ms, end_ms)
    today = now.astimezone(zone).date()
    if unit == "day":
        first, after = today - timedelta(days=1), today
        label = first.isoformat()
    elif unit == "week":
        after = today - timedelta(days=today.weekday())
        first = after - timedelta(days=7)
        year, week, _ = first.isocalendar()
        label = f"{year}-W{week:02d}"
    elif unit == "month":
        after = today.replace(day=1)
        first = (after - timedelta(days=1)).replace(day=1)
        label = first.strftime("%Y-%m")
    else:
        after = date(today.year, 1, 1)
        first = date(today.year - 1, 1, 1)
        label = str(first.year)
    return Period(label, _ms(_midnight(first, zone)), _ms(_midnight(after, zone)))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
