"""Where each alert rule's subjects stand now, read from DuckDB and the budget board after a refresh.

- `budget`: each budget of the app (or of every app): firing when used up (a per-user budget: when any user is),
  warning from its `warn_at` share;
- `error_rate`: each app whose errors over the last `window_minutes` pass `threshold` percent;
- `latency`: each app whose p95 latency over the window passes `threshold` ms;
- `unpriced_model`: each model without a price used in the window;
- `silence`: each app that has sent before but nothing for `window_minutes`.

Rates and percentiles need `MIN_SAMPLE` interactions in the window: one failed call of a quiet app is no spike.
"""

import duckdb

from tally.analytics.budgets import BudgetBoard
from tally.analytics.filters import Filters
from tally.analytics.where import interaction_where
from tally.store.alerts import Reading
from tally.store.models import AlertRule, id_of

MIN_SAMPLE = 10
MINUTE_MS = 60_000


def readings(cursor: duckdb.DuckDBPyConnection, rules: list[AlertRule], board: BudgetBoard, *,
             now_ms: int) -> list[Reading]:
    names = dict(cursor.execute("SELECT id, name FROM app").fetchall())
    found: list[Reading] = []
    for rule in rules:
        read = _READERS[rule.kind]
        found += read(cursor, rule, board, names, now_ms)
    return found


def _window(rule: AlertRule, now_ms: int) -> tuple[str, list]:
    start = now_ms - round(rule.window_minutes * MINUTE_MS)
    return interaction_where(Filters(max(start, 0), now_ms + 1, app_id=rule.app_id)).parts()


def _app(names: dict, app_id: int) -> str:
    return names.get(app_id, f"app {app_id}")


def _budgets(cursor, rule: AlertRule, board: BudgetBoard, names: dict, now_ms: int) -> list[Reading]:
    found = []
    for budget in board.all_status(rule.app_id, now_ms=now_ms):
        level = "firing" if budget["exceeded"] else ("warning" if budget["warning"] else "ok")
        unit = "tokens" if budget["metric"] == "tokens" else "USD"
        scope = f"{budget['users_over']} user(s) over " if budget["per_user"] else f"{budget['used']:g} {unit} of "
        found.append(Reading(id_of(rule), f"budget {budget['id']}", level, budget["used"],
                             f"{_app(names, budget['app_id'])}: {scope}the {budget['limit']:g} {unit} per "
                             f"{budget['period']} budget {budget['id']}"))
    return found


def _error_rate(cursor, rule: AlertRule, board, names: dict, now_ms: int) -> list[Reading]:
    sql, params = _window(rule, now_ms)
    rows = cursor.execute(f"SELECT app_id, count(*), count(*) FILTER (WHERE is_error) FROM interaction "
                          f"WHERE {sql} GROUP BY app_id", params).fetchall()
    found = []
    for app_id, count, errors in rows:
        rate = 100 * errors / count
        level = "firing" if count >= MIN_SAMPLE and rate > (rule.threshold or 0) else "ok"
        found.append(Reading(id_of(rule), _app(names, app_id), level, rate,
                             f"{_app(names, app_id)}: {rate:.1f}% errors over the last {rule.window_minutes:g} "
                             f"minutes ({errors} of {count}; the rule: above {rule.threshold:g}%)"))
    return found


def _latency(cursor, rule: AlertRule, board, names: dict, now_ms: int) -> list[Reading]:
    sql, params = _window(rule, now_ms)
    rows = cursor.execute(f"SELECT app_id, count(*), quantile_cont(latency_ms, 0.95) FROM interaction "
                          f"WHERE {sql} GROUP BY app_id", params).fetchall()
    return [Reading(id_of(rule), _app(names, app_id),
                    "firing" if count >= MIN_SAMPLE and p95 > (rule.threshold or 0) else "ok", p95,
                    f"{_app(names, app_id)}: p95 latency {p95:,.0f} ms over the last {rule.window_minutes:g} "
                    f"minutes (the rule: above {rule.threshold:,.0f} ms)")
            for app_id, count, p95 in rows]


def _unpriced(cursor, rule: AlertRule, board, names: dict, now_ms: int) -> list[Reading]:
    sql, params = _window(rule, now_ms)
    rows = cursor.execute(f"SELECT app_id, provider, coalesce(model, ''), count(*) FROM costed "
                          f"WHERE {sql} AND NOT priced GROUP BY ALL", params).fetchall()
    return [Reading(id_of(rule), f"{provider}/{model}", "firing", count,
                    f"{_app(names, app_id)} used {provider}/{model or '(no model)'}, which has no price: its cost "
                    "is not counted (add it to TALLY_PRICES_FILE)")
            for app_id, provider, model, count in rows]


def _silence(cursor, rule: AlertRule, board, names: dict, now_ms: int) -> list[Reading]:
    """The last request of each app: the hour rollup finds its last hour, the raw rows the moment within it."""
    apps = "" if rule.app_id is None else "WHERE app_id = ?"
    hours = cursor.execute(f"SELECT app_id, max(start_ms) FROM rollup_hour {apps} GROUP BY app_id",
                           [] if rule.app_id is None else [rule.app_id]).fetchall()
    found = []
    for app_id, hour in hours:
        [(last,)] = cursor.execute("SELECT max(request_at) FROM interaction WHERE app_id = ? AND request_at >= ?",
                                   [app_id, hour]).fetchall()
        if last is None:
            continue
        quiet = (now_ms - last) / MINUTE_MS
        level = "firing" if quiet >= rule.window_minutes else "ok"
        found.append(Reading(id_of(rule), _app(names, app_id), level, quiet,
                             f"{_app(names, app_id)} has sent nothing for {quiet:,.0f} minutes (the rule: "
                             f"{rule.window_minutes:g})"))
    return found


_READERS = {"budget": _budgets, "error_rate": _error_rate, "latency": _latency, "unpriced_model": _unpriced,
            "silence": _silence}
