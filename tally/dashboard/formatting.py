"""Numbers, money, durations and times written for people: 1.2M tokens, $3.45, 2.3 s, 2026-11-24 14:05."""

from datetime import datetime
from zoneinfo import ZoneInfo

_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def compact(value: float | int | None) -> str:
    """1234 → 1.2k, 1_500_000 → 1.5M; below a thousand the whole number."""
    if value is None:
        return "–"
    for size, unit in _UNITS:
        if abs(value) >= size * 0.9995:
            scaled = value / size
            return f"{scaled:.1f}{unit}".replace(".0" + unit, unit) if abs(scaled) < 100 else f"{scaled:.0f}{unit}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def money(value: float | None) -> str:
    """Dollars with cents; small amounts keep two significant digits ($0.0042), so they never read as $0.00."""
    if value is None:
        return "–"
    if value == 0:
        return "$0.00"
    if abs(value) < 0.01:
        return f"${value:.2g}" if abs(value) >= 1e-4 else "<$0.0001"
    if abs(value) >= 1e6:
        return "$" + compact(value)
    return f"${value:,.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def duration_ms(value: float | None) -> str:
    """850 ms, 2.3 s, 4 min 10 s, 1 h 05 min."""
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(epoch_ms: int | None, zone: ZoneInfo, *, seconds: bool = False) -> str:
    if not epoch_ms:
        return "–"
    moment = datetime.fromtimestamp(epoch_ms / 1000, zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day(epoch_ms: int, zone: ZoneInfo) -> str:
    """The local day of an instant, as the filter bar's custom range takes it."""
    return datetime.fromtimestamp(epoch_ms / 1000, zone).date().isoformat()


def change(current: float | None, previous: float | None) -> dict | None:
    """The change against the previous period: {"text": "+12%", "direction": "up"}, or None if not comparable."""
    if current is None or previous is None:
        return None
    if previous == 0:
        return None if current == 0 else {"text": "new", "direction": "up"}
    ratio = (current - previous) / abs(previous)
    direction = "flat" if abs(ratio) < 0.005 else "up" if ratio > 0 else "down"
    return {"text": f"{ratio * 100:+.0f}%" if abs(ratio) >= 0.01 else f"{ratio * 100:+.1f}%", "direction": direction}
