"""Resolving the end users of a batch: by userId, else by email (case-insensitive), else a new user.

A batch costs a few statements whatever its size: one lookup per identity kind for what the cache lacks, one
multi-row insert for new users, one multi-row update for changed profiles. Runs only inside the single ingest
writer, so resolving cannot race with itself; the cache remembers each known user's stored profile, so a known
user with an unchanged profile costs no SQL at all.
"""

from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, insert, select, update

from tally.ingest.wire import UserFields
from tally.store.models import EndUser

_users = EndUser.__table__
PROFILE_FIELDS = ("email", "first_name", "last_name", "phone", "gender", "is_authenticated")
_WIRE_NAMES = {"email": "email", "first_name": "firstName", "last_name": "lastName", "phone": "phone",
               "gender": "gender", "is_authenticated": "isAuthenticated"}
_CACHE_LIMIT = 200_000
_insert_returning_ids = insert(_users).returning(_users.c.id, sort_by_parameter_order=True)
_COLUMNS = (_users.c.id, _users.c.app_id, _users.c.external_id, _users.c.profile_at,
            *(_users.c[f] for f in PROFILE_FIELDS))
_select_by = {
    column: select(*_COLUMNS).where(_users.c.app_id == bindparam("app_id"),
                                    _users.c[column].in_(bindparam("values", expanding=True))).order_by(_users.c.id)
    for column in ("external_id", "email_key")
}
_CHANGEABLE = ("external_id", "email_key", "profile_at", "updated_at", *PROFILE_FIELDS)
_update_profile = update(_users).where(_users.c.id == bindparam("changed_id")).values(
    {name: bindparam(f"new_{name}") for name in _CHANGEABLE})


@dataclass(slots=True, eq=False)
class KnownUser:
    app_id: int
    user_id: int | None  # None until the batch inserts it
    external_id: str | None
    profile: dict
    profile_at: int
    dirty: bool = field(default=False)


@dataclass(frozen=True, slots=True)
class UserRequest:
    app_id: int
    fields: UserFields | None
    at_ms: int


class UserDirectory:
    def __init__(self) -> None:
        self._by_identity: dict[tuple[int, str], KnownUser] = {}

    def clear(self) -> None:
        self._by_identity.clear()

    def resolve_batch(self, conn: Connection, requests: list[UserRequest], *, now_ms: int) -> list[tuple[int, bool]]:
        """(user id, created by this batch) for each request, in order."""
        if len(self._by_identity) > _CACHE_LIMIT:
            self._by_identity.clear()
        self._load_missing(conn, requests)
        created: list[KnownUser] = []
        resolved = []
        for request in requests:
            user = self._resolve(request, created)
            resolved.append((user, user.user_id is None))  # not yet inserted: new in this batch
        if created:
            rows = [_row(user, now_ms) for user in created]
            for user, user_id in zip(created, conn.execute(_insert_returning_ids, rows).scalars()):
                user.user_id = user_id
                user.dirty = False
        changed = [user for user in {id(u): u for u, _ in resolved}.values() if user.dirty]
        if changed:
            conn.execute(_update_profile, [
                {"changed_id": user.user_id, **{f"new_{k}": v for k, v in _row(user, now_ms).items()
                                                if k in _CHANGEABLE}} for user in changed])
            for user in changed:
                user.dirty = False
        return [(user.user_id, new) for user, new in resolved]

    def _resolve(self, request: UserRequest, created: list[KnownUser]) -> KnownUser:
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
                    known.dirty = True
        elif email_key is not None:
            known = self._by_identity.get((request.app_id, "email:" + email_key))
        if known is None:
            known = KnownUser(request.app_id, None, external_id, {f: incoming.get(f) for f in PROFILE_FIELDS},
                              request.at_ms)
            created.append(known)
            if external_id is not None or email_key is not None:  # an anonymous user is never met again
                self._remember(known)
            return known
        _merge_profile(known, incoming, request.at_ms)
        self._remember(known)
        return known

    def _load_missing(self, conn: Connection, requests: list[UserRequest]) -> None:
        """One query per app and identity kind for the identities the cache does not hold."""
        wanted: dict[tuple[int, str], set[str]] = {}
        for request in requests:
            fields = request.fields
            if fields is None:
                continue
            if fields.userId is not None and (request.app_id, "id:" + fields.userId) not in self._by_identity:
                wanted.setdefault((request.app_id, "external_id"), set()).add(fields.userId)
            if fields.email and (request.app_id, "email:" + fields.email.lower()) not in self._by_identity:
                wanted.setdefault((request.app_id, "email_key"), set()).add(fields.email.lower())
        for (app_id, column), values in wanted.items():
            for row in conn.execute(_select_by[column], {"app_id": app_id, "values": list(values)}):
                known = KnownUser(app_id, row.id, row.external_id, {f: getattr(row, f) for f in PROFILE_FIELDS},
                                  row.profile_at)
                if known.external_id is not None:
                    self._by_identity.setdefault((app_id, "id:" + known.external_id), known)
                if known.profile.get("email"):
                    self._by_identity.setdefault((app_id, "email:" + known.profile["email"].lower()), known)

    def _remember(self, known: KnownUser) -> None:
        if known.external_id is not None:
            self._by_identity[(known.app_id, "id:" + known.external_id)] = known
        if known.profile.get("email"):
            self._by_identity.setdefault((known.app_id, "email:" + known.profile["email"].lower()), known)


def _merge_profile(known: KnownUser, incoming: dict, at_ms: int) -> None:
    """Each field keeps its latest non-empty value, latest by the interaction's own time."""
    newer = at_ms >= known.profile_at
    for name, value in incoming.items():
        if value is not None and value != known.profile.get(name) and (newer or known.profile.get(name) is None):
            known.profile[name] = value
            known.dirty = True
    if known.dirty and newer:
        known.profile_at = at_ms


def _row(user: KnownUser, now_ms: int) -> dict:
    email = user.profile.get("email")
    return {**user.profile, "app_id": user.app_id, "external_id": user.external_id,
            "email_key": email.lower() if email else None, "profile_at": user.profile_at,
            "created_at": user.profile_at, "updated_at": now_ms}


def _profile_of(fields: UserFields | None) -> dict:
    if fields is None:
        return {}
    return {column: getattr(fields, wire) for column, wire in _WIRE_NAMES.items()}
