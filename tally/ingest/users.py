"""Resolving the end user of an interaction: by userId, else by email (case-insensitive), else a new user.

Runs only inside the single ingest writer, so a get-then-insert cannot race with itself; the caches map
identities to user ids and remember the stored profile, so a known user with an unchanged profile costs no SQL.
"""

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from tally.ingest.wire import UserFields
from tally.store.models import EndUser

_users = EndUser.__table__
PROFILE_FIELDS = ("email", "first_name", "last_name", "phone", "gender", "is_authenticated")
_WIRE_NAMES = {"email": "email", "first_name": "firstName", "last_name": "lastName", "phone": "phone",
               "gender": "gender", "is_authenticated": "isAuthenticated"}
_CACHE_LIMIT = 200_000


@dataclass(slots=True)
class _Known:
    user_id: int
    external_id: str | None
    profile: dict
    profile_at: int


class UserDirectory:
    def __init__(self) -> None:
        self._by_identity: dict[tuple[int, str], _Known] = {}

    def clear(self) -> None:
        self._by_identity.clear()

    def resolve(self, conn: Connection, *, app_id: int, fields: UserFields | None, at_ms: int,
                now_ms: int) -> tuple[int, bool]:
        """The user's id, and whether this interaction created the user; `now_ms` stamps changed rows."""
        if len(self._by_identity) > _CACHE_LIMIT:
            self._by_identity.clear()
        incoming = _profile_of(fields)
        external_id = fields.userId if fields else None
        email_key = incoming["email"].lower() if incoming.get("email") else None
        if external_id is None and email_key is None:
            return self._create(conn, app_id=app_id, external_id=None, profile=incoming, at_ms=at_ms,
                                now_ms=now_ms).user_id, True

        known = self._find(conn, app_id=app_id, external_id=external_id, email_key=email_key)
        if known is None:
            known = self._create(conn, app_id=app_id, external_id=external_id, profile=incoming, at_ms=at_ms,
                                 now_ms=now_ms)
            created = True
        else:
            created = False
            if external_id is not None and known.external_id is None:  # an email-only user gains its userId
                known.external_id = external_id
                conn.execute(update(_users).where(_users.c.id == known.user_id)
                             .values(external_id=external_id, updated_at=now_ms))
            self._merge_profile(conn, known, incoming, at_ms, now_ms)
        self._remember(app_id, known)
        return known.user_id, created

    def _find(self, conn: Connection, *, app_id: int, external_id: str | None, email_key: str | None) -> _Known | None:
        if external_id is not None:
            known = self._by_identity.get((app_id, "id:" + external_id)) or self._load(
                conn, (_users.c.app_id == app_id) & (_users.c.external_id == external_id))
            if known is not None or email_key is None:
                return known
            # Not known by userId: claim the email-only user with this email, if there is one.
            email_only = (_users.c.app_id == app_id) & (_users.c.email_key == email_key) & _users.c.external_id.is_(None)
            return self._load(conn, email_only)
        return self._by_identity.get((app_id, "email:" + email_key)) or self._load(
            conn, (_users.c.app_id == app_id) & (_users.c.email_key == email_key))

    def _load(self, conn: Connection, condition) -> _Known | None:
        row = conn.execute(
            select(_users.c.id, _users.c.external_id, _users.c.profile_at, *(_users.c[f] for f in PROFILE_FIELDS))
            .where(condition).order_by(_users.c.id).limit(1)
        ).first()
        if row is None:
            return None
        return _Known(row.id, row.external_id, {f: getattr(row, f) for f in PROFILE_FIELDS}, row.profile_at)

    def _create(self, conn: Connection, *, app_id: int, external_id: str | None, profile: dict, at_ms: int,
                now_ms: int) -> _Known:
        values = {f: profile.get(f) for f in PROFILE_FIELDS}
        user_id = conn.execute(
            insert(_users).returning(_users.c.id),
            {**values, "app_id": app_id, "external_id": external_id, "email_key": _email_key(values),
             "profile_at": at_ms, "created_at": at_ms, "updated_at": now_ms},
        ).scalar_one()
        return _Known(user_id, external_id, values, at_ms)

    def _merge_profile(self, conn: Connection, known: _Known, incoming: dict, at_ms: int, now_ms: int) -> None:
        """Each field keeps its latest non-empty value, latest by the interaction's own time."""
        newer = at_ms >= known.profile_at
        changes = {
            f: value for f, value in incoming.items()
            if value is not None and value != known.profile.get(f) and (newer or known.profile.get(f) is None)
        }
        if not changes and not (newer and at_ms > known.profile_at):
            return
        known.profile.update(changes)
        known.profile_at = max(known.profile_at, at_ms)
        if changes:  # a bare profile_at bump is kept in memory only; it is not worth a write per interaction
            if "email" in changes:
                changes["email_key"] = _email_key(known.profile)
            conn.execute(update(_users).where(_users.c.id == known.user_id)
                         .values(**changes, profile_at=known.profile_at, updated_at=now_ms))

    def _remember(self, app_id: int, known: _Known) -> None:
        if known.external_id is not None:
            self._by_identity[(app_id, "id:" + known.external_id)] = known
        if known.profile.get("email"):
            self._by_identity.setdefault((app_id, "email:" + known.profile["email"].lower()), known)


def _profile_of(fields: UserFields | None) -> dict:
    if fields is None:
        return {}
    return {column: getattr(fields, wire) for column, wire in _WIRE_NAMES.items()}


def _email_key(profile: dict) -> str | None:
    return profile["email"].lower() if profile.get("email") else None
