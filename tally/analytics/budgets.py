"""What each budget has used in its current window, counted in DuckDB after every refresh and kept in memory, so
that an app's check before calling a model costs a lookup, not a query.

A window is the calendar hour, day, week (from Monday) or month holding now, in the analytics time zone. The
figures are those of the last refresh: they may miss what arrived since (at most TALLY_ANALYTICS_REFRESH_SECONDS
plus the refresh's own time); once a window has ended, its budget reads as unused until the next refresh counts
the new one. Tokens count with their provenance (reported, estimated); a cost budget never counts an unpriced
model as $0: its tokens are shown as `unpriced_tokens`, and `complete` is false.
"""

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from tally.analytics.filters import Filters
from tally.analytics.local_time import HOUR_MS, hour_start
from tally.analytics.where import interaction_where

NO_USE = 0  # the user id of someone with no use counted (store ids start at 1)


@dataclass(frozen=True)
class BudgetRule:
    """A budget as the store keeps it (`store.models.Budget`), in the terms the analytics need."""

    id: int
    app_id: int
    per_user: bool
    metric: str  # tokens or cost
    limit: float
    period: str  # hour, day, week or month
    model: str | None
    warn_at: float


@dataclass(frozen=True)
class Use:
    tokens: int = 0
    reported_tokens: int = 0
    estimated_tokens: int = 0
    cost: float = 0.0  # of the priced interactions
    unpriced_tokens: int = 0

    def used(self, metric: str) -> float:
        return self.tokens if metric == "tokens" else self.cost


@dataclass(frozen=True)
class Counted:
    rule: BudgetRule
    start_ms: int
    end_ms: int
    whole: Use = Use()  # the app's (or, per user, every user's together)
    users: dict[int, Use] = field(default_factory=dict)  # per end user (internal id), for a per-user budget


def current_window(period: str, zone_name: str, now_ms: int) -> tuple[int, int]:
    """The calendar `period` holding `now_ms` in the zone: [start, end) in epoch ms."""
    if period == "hour":
        return hour_start(now_ms, zone_name), hour_start(now_ms + HOUR_MS, zone_name)
    zone = ZoneInfo(zone_name)
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    if period == "day":
        first, after = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, zone), _midnight(after, zone)


def _midnight(day: date, zone: ZoneInfo) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


_SUMS = """
    coalesce(sum(total_tokens) FILTER (WHERE usage_source <> 'absent'), 0),
    coalesce(sum(total_tokens) FILTER (WHERE usage_source = 'reported'), 0),
    coalesce(sum(total_tokens) FILTER (WHERE usage_source = 'estimated'), 0),
    coalesce(sum(cost), 0)::DOUBLE,
    coalesce(sum(total_tokens) FILTER (WHERE NOT priced AND usage_source <> 'absent'), 0)"""


def count(cursor: duckdb.DuckDBPyConnection, rules: list[BudgetRule], zone_name: str, now_ms: int) -> list[Counted]:
    """Each budget's use in its current window, from the priced interactions (`costed`)."""
    counted = []
    for rule in rules:
        start, end = current_window(rule.period, zone_name, now_ms)
        sql, params = interaction_where(Filters(start, end, app_id=rule.app_id, model=rule.model)).parts()
        if rule.per_user:
            rows = cursor.execute(f"SELECT user_id, {_SUMS} FROM costed WHERE {sql} GROUP BY user_id",
                                  params).fetchall()
            users = {row[0]: Use(*row[1:]) for row in rows}
            whole = Use(*(sum(values) for values in zip(*[row[1:] for row in rows]))) if rows else Use()
            counted.append(Counted(rule, start, end, whole, users))
        else:
            [row] = cursor.execute(f"SELECT {_SUMS} FROM costed WHERE {sql}", params).fetchall()
            counted.append(Counted(rule, start, end, Use(*row)))
    return counted


class BudgetBoard:
    """The budgets' use as of the last count, for checks and ingest answers; replaced whole after each count."""

    def __init__(self, zone_name: str) -> None:
        self._zone = zone_name
        self._by_app: dict[int, list[Counted]] = {}
        self._users: dict[tuple[int, str], int] = {}  # (app, userId or lower-cased email) → end user id
        self.counted_at: int | None = None
        self._lock = threading.Lock()

    def replace(self, counted: list[Counted], users: dict[tuple[int, str], int], at_ms: int) -> None:
        by_app: dict[int, list[Counted]] = {}
        for item in counted:
            by_app.setdefault(item.rule.app_id, []).append(item)
        with self._lock:
            self._by_app, self._users, self.counted_at = by_app, users, at_ms

    def has_budgets(self, app_id: int) -> bool:
        return app_id in self._by_app

    def all_status(self, app_id: int | None, *, now_ms: int) -> list[dict]:
        """Every budget (of one app, or of all) as it stands: an app's own by its use; a per-user one exceeded
        when any user is over it, warning when any user passed its warning share (`users_over` counts them)."""
        found = []
        for owner, items in self._by_app.items():
            if app_id is not None and owner != app_id:
                continue
            for item in items:
                rule = item.rule
                ended = now_ms >= item.end_ms
                if rule.per_user:
                    uses = [] if ended else [use.used(rule.metric) for use in item.users.values()]
                    users = sum(1 for used in uses if used >= rule.limit)
                    exceeded, warning = users > 0, any(used >= rule.warn_at * rule.limit for used in uses)
                    used = float(users)
                else:
                    used = 0.0 if ended else item.whole.used(rule.metric)
                    users, exceeded, warning = 0, used >= rule.limit, used >= rule.warn_at * rule.limit
                found.append({"id": rule.id, "app_id": owner, "metric": rule.metric, "limit": rule.limit,
                              "period": rule.period, "per_user": rule.per_user, "used": used, "users_over": users,
                              "exceeded": exceeded, "warning": warning})
        return found

    def exceeded(self, apps: frozenset[int] | None, *, now_ms: int) -> list[dict]:
        """The budgets used up now, of the apps one limited to `apps` sees."""
        return [budget for budget in self.all_status(None, now_ms=now_ms)
                if budget["exceeded"] and (apps is None or budget["app_id"] in apps)]

    def closest_users(self, budget_id: int, most: int, *, now_ms: int) -> list[dict]:
        """The `most` users of a per-user budget with the most use in its window, most first."""
        for items in self._by_app.values():
            for item in items:
                if item.rule.id == budget_id:
                    return _closest(item, most, now_ms)
        return []

    def user_id(self, app_id: int, user: str) -> int:
        """The end user an app's userId or email names, among those with use in a window; NO_USE for anyone else
        (a user Tally has not seen, or who has used nothing in any per-user budget's window)."""
        return self._users.get((app_id, user)) or self._users.get((app_id, user.lower())) or NO_USE

    def status(self, app_id: int, user_id: int | None, *, now_ms: int | None = None) -> dict:
        """`allowed` (no budget exceeded) and each budget that applies: the app's, and with a user, theirs."""
        now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        budgets, allowed = [], True
        for item in self._by_app.get(app_id, []):
            rule = item.rule
            if rule.per_user and user_id is None:
                continue
            use = item.users.get(user_id, Use()) if rule.per_user and user_id is not None else item.whole
            if now >= item.end_ms:  # a new window began after the count: nothing of it is counted yet
                start, end = current_window(rule.period, self._zone, now)
                item, use = replace(item, start_ms=start, end_ms=end), Use()
            used = use.used(rule.metric)
            exceeded = used >= rule.limit
            allowed &= not exceeded
            budgets.append({
                "id": rule.id, "metric": rule.metric, "period": rule.period, "per_user": rule.per_user,
                "model": rule.model, "used": used, "limit": rule.limit, "remaining": max(rule.limit - used, 0),
                "warning": used >= rule.warn_at * rule.limit, "exceeded": exceeded,
                "window_start": item.start_ms, "resets_at": item.end_ms,
                "tokens": {"reported": use.reported_tokens, "estimated": use.estimated_tokens,
                           "unpriced": use.unpriced_tokens},
                "complete": rule.metric == "tokens" or use.unpriced_tokens == 0})
        return {"allowed": allowed, "budgets": budgets, "counted_at": self.counted_at}


def _closest(item: Counted, most: int, now: int) -> list[dict]:
    if now >= item.end_ms:
        return []
    metric, limit = item.rule.metric, item.rule.limit
    ranked = sorted(item.users.items(), key=lambda pair: (-pair[1].used(metric), pair[0]))[:most]
    return [{"user_id": user_id, "used": use.used(metric), "remaining": max(limit - use.used(metric), 0),
             "exceeded": use.used(metric) >= limit} for user_id, use in ranked]


def user_keys(cursor: duckdb.DuckDBPyConnection, counted: list[Counted]) -> dict[tuple[int, str], int]:
    """(app, userId) and (app, lower-cased email) of every user with use in a per-user budget's window."""
    ids = sorted({user for item in counted if item.rule.per_user for user in item.users})
    if not ids:
        return {}
    rows = cursor.execute("SELECT id, app_id, external_id, email FROM end_user WHERE id IN (SELECT unnest(?))",
                          [ids]).fetchall()
    keys: dict[tuple[int, str], int] = {}
    for user_id, app_id, external_id, email in rows:
        if email:
            keys[(app_id, email.lower())] = user_id
        if external_id:
            keys[(app_id, external_id)] = user_id
    return keys
