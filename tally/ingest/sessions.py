"""Grouping interactions into sessions, independent of arrival order.

Interactions sharing a grouping key (an explicit `session` string, else the user) are sorted by request time.
Two neighbours belong to one session unless the gap between them exceeds the timeout carried by the earlier
one; an interaction without a timeout (an explicit session whose payload gave none) never times out.
Interactions at the same instant are always together, and the gap after them is measured against the longest
timeout among them, so that no tie can make arrival order matter. `group_sessions` states that rule as a pure
function.

`SessionPlacer` maintains it incrementally, within one storing transaction: it reads the last stored
interaction of every key the batch touches and does not know already (one query), places arrivals after it
without SQL, and places an earlier one between its stored neighbours, merging or splitting the sessions around
it. What it knows already comes from the storage process's cache, kept only while it is the store's only writer
(see `ingest.cache`).
"""

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update

from tally.store.bulk import insert_rows
from tally.store.models import Interaction, InteractionSession, table_of

_interactions = table_of(Interaction)
_sessions = table_of(InteractionSession)
# Among interactions at one instant, the one whose timeout is longest (no timeout at all first) speaks for them.
_LONGEST_TIMEOUT_FIRST = (_interactions.c.session_timeout_ms.is_(None).desc(),
                          _interactions.c.session_timeout_ms.desc(), _interactions.c.id.desc())
_later = _interactions.alias("later")
# Every interaction at the last instant of each key: one index seek per key.
_select_tails = select(_interactions.c.session_key, _interactions.c.request_at, _interactions.c.session_timeout_ms,
                       _interactions.c.session_id).where(
    _interactions.c.app_id == bindparam("app_id"),
    _interactions.c.session_key.in_(bindparam("keys", expanding=True)),
    _interactions.c.request_at == select(func.max(_later.c.request_at)).where(
        _later.c.app_id == _interactions.c.app_id, _later.c.session_key == _interactions.c.session_key
    ).scalar_subquery())


def linked(earlier_at: int, earlier_timeout_ms: int | None, later_at: int) -> bool:
    return earlier_timeout_ms is None or later_at - earlier_at <= earlier_timeout_ms


def longest(first: int | None, second: int | None) -> int | None:
    """The longer of two timeouts; None (never times out) is longest."""
    return None if first is None or second is None else max(first, second)


def time_order(at_ms: int, timeout_ms: int | None) -> tuple:
    """Sort key of an interaction within its grouping key: by time, and at one instant the longest timeout
    last, as it is the one compared with the next gap."""
    return at_ms, timeout_ms is None, timeout_ms or 0


def group_sessions(points: Sequence[tuple[int, int | None]]) -> list[int]:
    """Session number of each (request_at, timeout_ms) point, points given in arrival order."""
    order = sorted(range(len(points)), key=lambda i: (*time_order(*points[i]), i))
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


@dataclass(frozen=True, slots=True)
class Placement:
    """What placing one interaction needs to know."""

    app_id: int
    key: str
    at_ms: int
    timeout_ms: int | None
    user_id: int
    external_id: str | None  # the explicit session's name, carried by every session row of that key


class SessionPlacer:
    """Places the interactions of one transaction; make a new one for each. `tails` holds what is known of keys
    from earlier transactions (the storage process's cache); on failure the caller must forget it."""

    def __init__(self, tails: MutableMapping[tuple[int, str], Tail | None] | None = None) -> None:
        self._tails = tails if tails is not None else {}
        self._pending: list[tuple[SessionRef, dict]] = []

    def load_tails(self, conn: Connection, keys: set[tuple[int, str]], *, new: set[tuple[int, str]]) -> None:
        """Read the stored tail of every key in `keys` not known already, in one query per app; keys in `new`
        have no stored interactions (their user was created by this batch), so they need no lookup."""
        self._tails.update(dict.fromkeys(new))
        wanted: dict[int, list[str]] = {}
        for app_id, key in keys - new:
            if (app_id, key) not in self._tails:
                self._tails[(app_id, key)] = None
                wanted.setdefault(app_id, []).append(key)
        for app_id, names in wanted.items():
            for row in conn.execute(_select_tails, {"app_id": app_id, "keys": names}):
                current = self._tails[(app_id, row.session_key)]
                timeout = row.session_timeout_ms if current is None else longest(current.timeout_ms,
                                                                                 row.session_timeout_ms)
                self._tails[(app_id, row.session_key)] = Tail(row.request_at, timeout, SessionRef(row.session_id))

    def insert_pending(self, conn: Connection) -> None:
        """Insert the sessions opened since the last call, in one statement, and give their refs ids."""
        if not self._pending:
            return
        ids = insert_rows(conn, _sessions, [values for _, values in self._pending])
        for (ref, _), session_id in zip(self._pending, ids):
            ref.id = session_id
        self._pending.clear()

    def place(self, conn: Connection, item: Placement, *, now_ms: int, flush: Callable[[], None]) -> SessionRef:
        """The session for a new interaction; `flush` writes the batch's pending rows before any lookup by time."""
        cache_key = (item.app_id, item.key)
        tail = self._tails[cache_key]
        if tail is None or item.at_ms >= tail.at_ms:
            timeout_ms = item.timeout_ms
            if tail is not None and linked(tail.at_ms, tail.timeout_ms, item.at_ms):
                session = tail.session
            else:
                session = SessionRef(None)
                self._pending.append((session, _new_session(item, now_ms)))
            if tail is not None and item.at_ms == tail.at_ms:
                timeout_ms = longest(timeout_ms, tail.timeout_ms)
            self._tails[cache_key] = Tail(item.at_ms, timeout_ms, session)
            return session
        flush()
        session = SessionRef(self._place_between(conn, item, now_ms))
        # A merge or split may have moved the tail to another session: read it again.
        del self._tails[cache_key]
        self.load_tails(conn, {cache_key}, new=set())
        return session

    def _place_between(self, conn: Connection, item: Placement, now_ms: int) -> int:
        same_key = and_(_interactions.c.app_id == item.app_id, _interactions.c.session_key == item.key)
        columns = (_interactions.c.request_at, _interactions.c.session_timeout_ms, _interactions.c.session_id)
        before = conn.execute(select(*columns).where(same_key, _interactions.c.request_at <= item.at_ms).order_by(
            _interactions.c.request_at.desc(), *_LONGEST_TIMEOUT_FIRST).limit(1)).first()
        after = conn.execute(select(*columns).where(same_key, _interactions.c.request_at > item.at_ms).order_by(
            _interactions.c.request_at, _interactions.c.id).limit(1)).first()
        timeout_ms = item.timeout_ms
        joins_before = before is not None and linked(before.request_at, before.session_timeout_ms, item.at_ms)
        if before is not None and before.request_at == item.at_ms:  # the instant's longest timeout spans the gap
            timeout_ms = longest(timeout_ms, before.session_timeout_ms)
        joins_after = after is not None and linked(item.at_ms, timeout_ms, after.request_at)
        before_id: int | None = before.session_id if before is not None else None
        after_id: int | None = after.session_id if after is not None else None
        were_together = before_id is not None and before_id == after_id

        if joins_before and before_id is not None:
            session_id = before_id
        elif joins_after and not were_together and after_id is not None:
            return after_id  # the new one opens the session that followed it
        else:
            session_id = self._insert_now(conn, item, now_ms)

        if were_together and before_id is not None and not joins_after:  # the new gap splits the session
            self._move_later(conn, before_id, item.at_ms, self._insert_now(conn, item, now_ms), now_ms)
        elif were_together and before_id is not None and not joins_before:  # the new one heads the later half
            self._move_later(conn, before_id, item.at_ms, session_id, now_ms)
        elif joins_after and not were_together:  # the new one bridges two sessions
            conn.execute(update(_interactions).where(_interactions.c.session_id == after_id)
                         .values(session_id=session_id, updated_at=now_ms))
            conn.execute(update(_sessions).where(_sessions.c.id == after_id).values(merged_into=session_id))
        return session_id

    @staticmethod
    def _insert_now(conn: Connection, item: Placement, now_ms: int) -> int:
        return conn.execute(insert(_sessions).returning(_sessions.c.id), _new_session(item, now_ms)).scalar_one()

    @staticmethod
    def _move_later(conn: Connection, session_id: int, after_ms: int, new_session_id: int, now_ms: int) -> None:
        conn.execute(update(_interactions)
                     .where(_interactions.c.session_id == session_id, _interactions.c.request_at > after_ms)
                     .values(session_id=new_session_id, updated_at=now_ms))


def _new_session(item: Placement, now_ms: int) -> dict:
    return {"app_id": item.app_id, "external_id": item.external_id, "user_id": item.user_id, "created_at": now_ms}
