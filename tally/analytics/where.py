"""The one place where filters become SQL: every query over the warehouse builds its WHERE clause here.

A source names the expression that holds each dimension (app, provider, model, user, session); the app
restriction of the reader (`Filters.apps`) is applied to every source, so no query can forget it. A dimension a
source cannot filter by is a programming error when it is asked for, never silently ignored.
"""

from dataclasses import dataclass, field

from tally.analytics.filters import Filters


@dataclass
class Where:
    """Conditions joined by AND and their parameters, in order."""

    conditions: list[str] = field(default_factory=list)
    params: list = field(default_factory=list)

    def add(self, condition: str, *params) -> "Where":
        self.conditions.append(condition)
        self.params.extend(params)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"

    def parts(self) -> tuple[str, list]:
        return self.sql, list(self.params)


def _condition(expression: str) -> str:
    """`column` means `column = ?`; an expression holding `?` is used as it is."""
    return expression if "?" in expression else f"{expression} = ?"


def where(f: Filters, *, time: tuple[str, list], app: str, provider: str | None = None, model: str | None = None,
          user: str | None = None, session: str | None = None, session_id: int | None = None) -> Where:
    """The conditions for `f` over a source: `time` is its range condition and parameters (sources keep time in
    their own way: instants, local days, overlapping sessions); the others name the expression of each dimension
    the source holds. `app` is required: every source belongs to apps, so the reader's restriction applies."""
    built = Where([time[0]], list(time[1]))
    if f.apps is not None:
        if f.apps:
            built.add(f"{app} IN ({', '.join('?' * len(f.apps))})", *sorted(f.apps))
        else:
            built.add("FALSE")
    for name, expression, value in (("app", app, f.app_id), ("provider", provider, f.provider),
                                    ("model", model, f.model), ("user", user, f.user_id),
                                    ("session", session, session_id)):
        if value is None:
            continue
        if expression is None:
            raise ValueError(f"this source cannot be filtered by {name}")
        built.add(_condition(expression), value)
    return built


def raw_range(f: Filters) -> tuple[str, list]:
    """The range condition over raw interactions: requested within it."""
    return "request_at >= ? AND request_at < ?", [f.start_ms, f.end_ms]


def interaction_where(f: Filters, session_id: int | None = None) -> Where:
    """Interactions requested in the range, of the app, provider, model, user and session asked for."""
    return where(f, time=raw_range(f), app="app_id", provider="provider", model="model", user="user_id",
                 session="session_id", session_id=session_id)
