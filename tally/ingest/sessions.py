"""Grouping interactions into sessions, independent of arrival order.

Interactions sharing a grouping key (an explicit `session` string, else the user) are sorted by request time.
Two neighbours belong to one session unless the gap between them exceeds the timeout carried by the earlier
one; an explicit session never times out. Interactions at the same instant are always together, and the gap
after them is measured against the longest timeout among them, so that no tie can make arrival order matter.
`group_sessions` states that rule as a pure function.
`SessionPlacer` maintains it incrementally: an arrival after the key's last interaction (the common case) is
placed from an in-memory tail without SQL; an earlier one is placed between its stored neighbours, merging or
splitting the sessions around it. Runs only inside the single ingest writer.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from tally.store.models import Interaction, InteractionSession

_interactions = Interaction.__table__
_sessions = InteractionSession.__table__
_CACHE_LIMIT = 200_000
_insert_returning_ids = insert(_sessions).returning(_sessions.c.id, sort_by_parameter_order=True)
# Among interactions at one instant, the one whose timeout is longest (no timeout at all first) speaks for them.
_LONGEST_TIMEOUT_FIRST = (_interactions.c.session_timeout_ms.is_(None).desc(),
                          _interactions.c.session_timeout_ms.desc(), _interactions.c.id.desc())
_select_tail = select(_interactions.c.request_at, _interactions.c.session_timeout_ms, _interactions.c.session_id).where(
    _interactions.c.app_id == bindparam("app_id"), _interactions.c.session_key == bindparam("key")
).order_by(_interactions.c.request_at.desc(), *_LONGEST_TIMEOUT_FIRST).limit(1)
_select_explicit = select(_sessions.c.external_id).where(
    _sessions.c.app_id == bindparam("app_id"), _sessions.c.external_id.in_(bindparam("names", expanding=True)))


def linked(earlier_at: int, earlier_timeout_ms: int | None, later_at: int) -> bool:
    return earlier_timeout_ms is None or later_at - earlier_at <= earlier_timeout_ms


def longest(first: int | None, second: int | None) -> int | None:
    """The longer of two timeouts; None (never times out) is longest."""
    return None if first is None or second is None else max(first, second)


def group_sessions(points: Sequence[tuple[int, int | None]]) -> list[int]:
    """Session number of each (request_at, timeout_ms) point, points given in arrival order."""
    # Ties are ordered by timeout, the longest last: it is the one compared with the next gap.
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1] is None, points[i][1] or 0, i))
    labels = [0] * len(points)
    current = -1
    for position, index in enumerate(order):
        if position == 0 or not linked(*points[order[position - 1]], points[index][0]):
            current += 1
        labels[index] = current
    return labels


@dataclass(slots=True, eq=False)
class SessionRef:
    """A session; `id` is None until the batch inserts it."""

    id: int | None


@dataclass(slots=True)
class Tail:
    """The last interaction of a grouping key, as far as placement needs it."""

    at_ms: int
    timeout_ms: int | None
    session: SessionRef


class SessionPlacer:
    def __init__(self) -> None:
        self._tails: dict[tuple[int, str], Tail | None] = {}
        self._pending: list[tuple[SessionRef, dict]] = []

    def clear(self) -> None:
        self._tails.clear()
        self._pending.clear()

    def trim(self) -> None:
        """Forget tails between batches, when no key has rows waiting to be inserted."""
        if len(self._tails) > _CACHE_LIMIT:
            self._tails.clear()

    def preload_explicit(self, conn: Connection, sessions: set[tuple[int, str]]) -> None:
        """Mark the batch's explicit sessions that have no row yet as new keys: one query, not two per session."""
        unknown: dict[int, set[str]] = {}
        for app_id, name in sessions:
            if (app_id, "s:" + name) not in self._tails:
                unknown.setdefault(app_id, set()).add(name)
        for app_id, names in unknown.items():
            existing = set(conn.execute(_select_explicit, {"app_id": app_id, "names": list(names)}).scalars())
            for name in names - existing:
                self._tails[(app_id, "s:" + name)] = None

    def mark_new_key(self, app_id: int, key: str) -> None:
        """A key that has no stored interactions (its user is new), so placing needs no lookup."""
        self._tails.setdefault((app_id, key), None)

    def insert_pending(self, conn: Connection) -> None:
        """Insert the sessions opened since the last call, in one statement, and give their refs ids."""
        if not self._pending:
            return
        ids = conn.execute(_insert_returning_ids, [values for _, values in self._pending]).scalars().all()
        for (ref, _), session_id in zip(self._pending, ids):
            ref.id = session_id
        self._pending.clear()

    def place(self, conn: Connection, *, app_id: int, key: str, at_ms: int, timeout_ms: int | None,
              user_id: int, external_id: str | None, now_ms: int, flush: Callable[[], None]) -> SessionRef:
        """The session for a new interaction; `flush` writes the batch's pending rows before any lookup by time."""
        cache_key = (app_id, key)
        marked_new = cache_key in self._tails and self._tails[cache_key] is None
        if cache_key in self._tails:
            tail = self._tails[cache_key]
        else:
            tail = self._tails[cache_key] = self._stored_tail(conn, app_id, key)
        if tail is None or at_ms >= tail.at_ms:
            if tail is not None and linked(tail.at_ms, tail.timeout_ms, at_ms):
                session = tail.session
            else:
                session = self._open(conn, app_id, user_id, external_id, now_ms, tail_known_empty=marked_new)
            if tail is not None and at_ms == tail.at_ms:
                timeout_ms = longest(timeout_ms, tail.timeout_ms)
            self._tails[cache_key] = Tail(at_ms, timeout_ms, session)
            return session
        flush()
        session = SessionRef(self._place_between(conn, app_id, key, at_ms, timeout_ms, user_id, now_ms))
        self._tails[cache_key] = self._stored_tail(conn, app_id, key)
        return session

    def _open(self, conn: Connection, app_id: int, user_id: int, external_id: str | None, now_ms: int,
              tail_known_empty: bool) -> SessionRef:
        if external_id is not None and not tail_known_empty:
            # An explicit session keeps one row for good; it may exist though no tail is cached here.
            existing = conn.execute(select(_sessions.c.id).where(
                _sessions.c.app_id == app_id, _sessions.c.external_id == external_id)).scalar()
            if existing is not None:
                return SessionRef(existing)
        ref = SessionRef(None)
        self._pending.append((ref, {"app_id": app_id, "external_id": external_id, "user_id": user_id,
                                    "created_at": now_ms}))
        return ref

    def _place_between(self, conn: Connection, app_id: int, key: str, at_ms: int, timeout_ms: int | None,
                       user_id: int, now_ms: int) -> int:
        same_key = (_interactions.c.app_id == app_id) & (_interactions.c.session_key == key)
        columns = (_interactions.c.request_at, _interactions.c.session_timeout_ms, _interactions.c.session_id)
        before = conn.execute(select(*columns).where(same_key, _interactions.c.request_at <= at_ms).order_by(
            _interactions.c.request_at.desc(), *_LONGEST_TIMEOUT_FIRST).limit(1)).first()
        after = conn.execute(select(*columns).where(same_key, _interactions.c.request_at > at_ms).order_by(
            _interactions.c.request_at, _interactions.c.id).limit(1)).first()
        joins_before = before is not None and linked(before.request_at, before.session_timeout_ms, at_ms)
        if before is not None and before.request_at == at_ms:  # the instant's longest timeout spans the next gap
            timeout_ms = longest(timeout_ms, before.session_timeout_ms)
        joins_after = after is not None and linked(at_ms, timeout_ms, after.request_at)
        were_together = before is not None and after is not None and before.session_id == after.session_id

        if joins_before:
            session_id = before.session_id
        elif joins_after and not were_together:
            return after.session_id  # the new one opens the session that followed it
        else:
            session_id = self._insert_now(conn, app_id, user_id, now_ms)

        if were_together and not joins_after:  # the new gap splits the session that spanned it
            self._move_later(conn, before.session_id, at_ms, self._insert_now(conn, app_id, user_id, now_ms), now_ms)
        elif were_together and not joins_before:  # the new one heads the later half
            self._move_later(conn, before.session_id, at_ms, session_id, now_ms)
        elif joins_after and not were_together:  # the new one bridges two sessions
            conn.execute(update(_interactions).where(_interactions.c.session_id == after.session_id)
                         .values(session_id=session_id, updated_at=now_ms))
            conn.execute(update(_sessions).where(_sessions.c.id == after.session_id).values(merged_into=session_id))
        return session_id

    @staticmethod
    def _insert_now(conn: Connection, app_id: int, user_id: int, now_ms: int) -> int:
        return conn.execute(insert(_sessions).returning(_sessions.c.id), {
            "app_id": app_id, "external_id": None, "user_id": user_id, "created_at": now_ms}).scalar_one()

    @staticmethod
    def _move_later(conn: Connection, session_id: int, after_ms: int, new_session_id: int, now_ms: int) -> None:
        conn.execute(update(_interactions)
                     .where(_interactions.c.session_id == session_id, _interactions.c.request_at > after_ms)
                     .values(session_id=new_session_id, updated_at=now_ms))

    @staticmethod
    def _stored_tail(conn: Connection, app_id: int, key: str) -> Tail | None:
        row = conn.execute(_select_tail, {"app_id": app_id, "key": key}).first()
        return Tail(row.request_at, row.session_timeout_ms, SessionRef(row.session_id)) if row is not None else None
