"""Resolving the end users of a batch: by userId, else by email (case-insensitive), else a new user.

A batch costs a few statements whatever its size: one lookup per app for the identities it names that are not
known already, one multi-row insert for new users, one update per set of changed columns. What is known already
comes from the storage process's cache, which it keeps only while it is the store's only writer (see
`ingest.cache`); without it, everything is read in the storing transaction, as it is on PostgreSQL.

Profiles keep, field by field, the latest non-empty value by the interaction's request time (not by arrival):
each field carries the time of its value. At one instant the greater value wins, so that arrival order never
decides.
"""

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select, union

from tally.ingest.wire import UserFields
from tally.store.bulk import insert_rows, update_rows
from tally.store.models import EndUser, table_of

_users = table_of(EndUser)
PROFILE_FIELDS = ("email", "first_name", "last_name", "phone", "gender", "is_authenticated")
_TIMES = {name: f"{name}_at" for name in PROFILE_FIELDS}
_COLUMN_OF_TIME = {column: name for name, column in _TIMES.items()}
_WIRE_NAMES = {"email": "email", "first_name": "firstName", "last_name": "lastName", "phone": "phone",
               "gender": "gender", "is_authenticated": "isAuthenticated"}
_COLUMNS = (_users.c.id, _users.c.app_id, _users.c.external_id, _users.c.profile_at, _users.c.updated_at,
            *(_users.c[name] for name in PROFILE_FIELDS), *(_users.c[name] for name in _TIMES.values()))
# Each identity kind through its own index (an OR of the two scans every user of the app), the rows locked in id
# order by the outer query (PostgreSQL allows no FOR UPDATE over a UNION itself).
_named = union(
    select(_users.c.id).where(_users.c.app_id == bindparam("app_id"),
                              _users.c.external_id.in_(bindparam("ids", expanding=True))),
    select(_users.c.id).where(_users.c.app_id == bindparam("app_id"),
                              _users.c.email_key.in_(bindparam("emails", expanding=True))))
_select_known = select(*_COLUMNS).where(_users.c.id.in_(_named)).order_by(_users.c.id).with_for_update()


@dataclass(slots=True, eq=False)
class KnownUser:
    app_id: int
    user_id: int | None  # None until the batch inserts it
    external_id: str | None
    profile: dict[str, Any]
    times: dict[str, int | None]  # per profile field: the request time its value came with
    profile_at: int  # the latest request time that brought a profile value
    updated_at: int  # when a value the analytics show last changed (their sync reads by it)
    changed: set[str] = field(default_factory=set)  # columns to write; often only a newer time for the same value


@dataclass(frozen=True, slots=True)
class UserRequest:
    app_id: int
    fields: UserFields | None
    at_ms: int


def resolve_users(conn: Connection, requests: list[UserRequest], *, now_ms: int,
                  known: MutableMapping[tuple[int, str], KnownUser] | None = None) -> list[tuple[int, bool]]:
    """(user id, created by this batch) for each request, in order. `known` maps identities to users known from
    earlier transactions (the storage process's cache, valid only while nobody else writes the store); whatever
    it lacks is read from the store. On failure, the caller must forget `known`: its users were changed."""
    directory = _Directory(known if known is not None else {}, now_ms)
    directory.load(conn, requests)
    resolved = [directory.resolve(request) for request in requests]
    created = directory.created
    if created:
        rows = [_row(user, now_ms) for user in created]
        for user, user_id in zip(created, insert_rows(conn, _users, rows)):
            user.user_id = user_id
            user.changed.clear()
    _write_changes(conn, [user for user in {id(u): u for u, _ in resolved}.values() if user.changed])
    return [(user.user_id, new) for user, new in resolved]  # type: ignore[misc]  # all inserted by now


class _Directory:
    """Users by identity (`app_id`, "id:…" or "email:…"): those known already, those read from the store for this
    batch (the lowest id first when users share an email), then the batch's new ones."""

    def __init__(self, identities: MutableMapping[tuple[int, str], KnownUser], now_ms: int) -> None:
        self._now_ms = now_ms
        self._by_identity = identities
        self.created: list[KnownUser] = []

    def load(self, conn: Connection, requests: list[UserRequest]) -> None:
        """Reads the users the batch names and `identities` lacks: one query per app. On PostgreSQL their rows
        stay locked to the end of the transaction (in id order), so a replica that reached the same user through
        another identity (its email) merges its profile into what this one wrote, not into what both read."""
        wanted: dict[int, tuple[set[str], set[str]]] = {}
        for request in requests:
            fields = request.fields
            if fields is None:
                continue
            ids, emails = wanted.setdefault(request.app_id, (set(), set()))
            if fields.userId is not None and (request.app_id, "id:" + fields.userId) not in self._by_identity:
                ids.add(fields.userId)
            if fields.email and (request.app_id, "email:" + fields.email.lower()) not in self._by_identity:
                emails.add(fields.email.lower())
        for app_id, (ids, emails) in wanted.items():
            if not ids and not emails:
                continue
            for row in conn.execute(_select_known, {"app_id": app_id, "ids": list(ids), "emails": list(emails)}):
                self._remember(KnownUser(app_id, row.id, row.external_id, {f: getattr(row, f) for f in PROFILE_FIELDS},
                                         {f: getattr(row, t) for f, t in _TIMES.items()}, row.profile_at,
                                         row.updated_at))

    def resolve(self, request: UserRequest) -> tuple[KnownUser, bool]:
        incoming = _profile_of(request.fields)
        external_id = request.fields.userId if request.fields else None
        email_key = incoming["email"].lower() if incoming.get("email") else None
        known = None
        if external_id is not None:
            known = self._by_identity.get((request.app_id, "id:" + external_id))
            if known is None and email_key is not None:  # claim the email-only user with this email
                by_email = self._by_identity.get((request.app_id, "email:" + email_key))
                if by_email is not None and by_email.external_id is None:
                    known = by_email
                    known.external_id = external_id
                    known.updated_at = self._now_ms
                    known.changed |= {"external_id", "updated_at"}
                    self._remember(known)
        elif email_key is not None:
            known = self._by_identity.get((request.app_id, "email:" + email_key))
        if known is None:
            known = KnownUser(request.app_id, None, external_id, dict.fromkeys(PROFILE_FIELDS),
                              dict.fromkeys(PROFILE_FIELDS), request.at_ms, self._now_ms)
            _merge_profile(known, incoming, request.at_ms)
            self.created.append(known)
            if external_id is not None or email_key is not None:  # an anonymous user is never met again
                self._remember(known)
            return known, True
        key_before = (known.profile.get("email") or "").lower()
        if _merge_profile(known, incoming, request.at_ms):
            known.updated_at = self._now_ms
            known.changed.add("updated_at")
        if key_before and (known.profile.get("email") or "").lower() != key_before:
            # Found by its old email no more; by its new one only once the store says which user has it first.
            # (The same email in other letter case is the same key: the user stays found by it.)
            old = (known.app_id, "email:" + key_before)
            if self._by_identity.get(old) is known:
                del self._by_identity[old]
        return known, known.user_id is None

    def _remember(self, known: KnownUser) -> None:
        if known.external_id is not None:
            self._by_identity.setdefault((known.app_id, "id:" + known.external_id), known)
        if known.profile.get("email"):
            self._by_identity.setdefault((known.app_id, "email:" + known.profile["email"].lower()), known)


def _merge_profile(known: KnownUser, incoming: dict, at_ms: int) -> bool:
    """Each field keeps its latest non-empty value by request time; at one instant, the greater value.
    Returns whether a value changed (a newer time for the same value changes nothing the analytics show)."""
    changed = False
    for name, value in incoming.items():
        if value is None:
            continue
        held, held_at = known.profile.get(name), known.times.get(name)
        newer = held is None or held_at is None or at_ms > held_at or (at_ms == held_at and value > held)
        if not newer or (value == held and at_ms == held_at):
            continue
        known.profile[name], known.times[name] = value, at_ms
        known.changed.add(_TIMES[name])
        if value != held:
            changed = True
            known.changed |= {name, "email_key"} if name == "email" else {name}
        if at_ms > known.profile_at:
            known.profile_at = at_ms
            known.changed.add("profile_at")
    return changed


def _write_changes(conn: Connection, users: list[KnownUser]) -> None:
    """One executemany per set of changed columns: mostly only the time of an unchanged value (no index to
    touch), for every user the batch saw."""
    groups: dict[tuple[str, ...], list[KnownUser]] = {}
    for user in users:
        groups.setdefault(tuple(sorted(user.changed)), []).append(user)
    for columns, members in groups.items():
        update_rows(conn, _users.name, columns, [(*(_value(user, name) for name in columns), user.user_id)
                                                 for user in members])
        for user in members:
            user.changed.clear()


def _value(user: KnownUser, column: str) -> Any:
    if column in _COLUMN_OF_TIME:
        return user.times[_COLUMN_OF_TIME[column]]
    if column == "email_key":
        return user.profile["email"].lower() if user.profile.get("email") else None
    if column in PROFILE_FIELDS:
        return user.profile[column]
    return getattr(user, column)  # external_id, profile_at, updated_at


def _row(user: KnownUser, now_ms: int) -> dict:
    email = user.profile.get("email")
    return {**user.profile, **{_TIMES[name]: at for name, at in user.times.items()}, "app_id": user.app_id,
            "external_id": user.external_id, "email_key": email.lower() if email else None,
            "profile_at": user.profile_at, "created_at": now_ms, "updated_at": user.updated_at}


def _profile_of(fields: UserFields | None) -> dict:
    if fields is None:
        return {}
    values = {column: getattr(fields, wire) for column, wire in _WIRE_NAMES.items()}
    return {column: (None if value == "" else value) for column, value in values.items()}
