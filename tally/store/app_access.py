"""Limiting a token or a dashboard account to some apps: what it sees of every listing, figure, object and file.

`None` means every app. A limited reader asking for another app's object gets the same answer as for an id that
was never handed out (404), so ids reveal nothing.
"""

from collections.abc import Iterable

from sqlalchemy import ColumnElement, true
from sqlmodel import Session, col, select

from tally.store.models import App

AppIds = frozenset[int] | None  # the apps one may see; None: every app


class UnknownApp(ValueError):
    """An app named in a restriction does not exist; the message names it."""


def app_ids(stored: list[int] | None) -> AppIds:
    """The restriction a token or account row holds (its `apps` column)."""
    return None if stored is None else frozenset(stored)


def sees(apps: AppIds, app_id: int | None) -> bool:
    """Whether one limited to `apps` may see an object of app `app_id` (None: an object of no one app, such as an
    export schedule over every app, which only the unlimited may see)."""
    return apps is None or (app_id is not None and app_id in apps)


def visible(app_column, apps: AppIds) -> ColumnElement[bool]:
    """The SQL condition that a row whose app is in `app_column` is one a reader limited to `apps` sees."""
    return true() if apps is None else app_column.in_(sorted(apps))


def resolve_apps(db: Session, names_or_ids: Iterable[str]) -> list[int] | None:
    """The ids of the apps named (by name, or by id), sorted; None when none are named (every app)."""
    wanted = list(dict.fromkeys(names_or_ids))
    if not wanted:
        return None
    found: set[int] = set()
    for name in wanted:
        app_id = find_app_id(db, name)
        if app_id is None:
            raise UnknownApp(f"no app is named {name!r} or has that id")
        found.add(app_id)
    return sorted(found)


def find_app_id(db: Session, name_or_id: str | int) -> int | None:
    """The id of the app with this name, else of the app with this id (a name wins over an id); None if neither."""
    text = str(name_or_id)
    app_id = db.exec(select(App.id).where(col(App.name) == text)).first()
    if app_id is None and text.isascii() and text.isdigit() and len(text) < 19:
        app_id = db.exec(select(App.id).where(col(App.id) == int(text))).first()
    return app_id


def app_names(db: Session, apps: list[int] | None) -> list[str] | None:
    """The names of the apps a restriction lists, in the order of their ids; None: every app."""
    if apps is None:
        return None
    names = dict(db.exec(select(App.id, App.name).where(col(App.id).in_(apps))).all())
    return [names.get(app_id, f"#{app_id}") for app_id in sorted(apps)]
