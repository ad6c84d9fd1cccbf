"""Grouping interactions into sessions, independent of arrival order.

Interactions sharing a grouping key (an explicit `session` string, else the user) are sorted by request time,
ties by arrival. Two neighbours belong to one session unless the gap between them exceeds the timeout carried
by the earlier one; an explicit session never times out. `group_sessions` states that rule as a pure function.
`SessionPlacer` maintains it incrementally: an arrival after the key's last interaction (the common case) is
placed from an in-memory tail without SQL; an earlier one is placed between its stored neighbours, merging or
splitting the sessions around it. Runs only inside the single ingest writer.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from tally.store.models import Interaction, InteractionSession

_interactions = Interaction.__table__
_sessions = InteractionSession.__table__
_CACHE_LIMIT = 200_000


def linked(earlier_at: int, earlier_timeout_ms: int | None, later_at: int) -> bool:
    return earlier_timeout_ms is None or later_at - earlier_at <= earlier_timeout_ms


def group_sessions(points: Sequence[tuple[int, int | None]]) -> list[int]:
    """Session number of each (request_at, timeout_ms) point, points given in arrival order."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], i))
    labels = [0] * len(points)
    current = -1
    for position, index in enumerate(order):
        if position == 0 or not linked(*points[order[position - 1]], points[index][0]):
            current += 1
        labels[index] = current
    return labels


@dataclass(slots=True)
class Tail:
    """The last interaction of a grouping key, as far as placement needs it."""

    at_ms: int
    timeout_ms: int | None
    session_id: int


class SessionPlacer:
    def __init__(self) -> None:
        self._tails: dict[tuple[int, str], Tail | None] = {}

    def clear(self) -> None:
        self._tails.clear()

    def trim(self) -> None:
        """Forget tails between batches, when no key has rows waiting to be inserted."""
        if len(self._tails) > _CACHE_LIMIT:
            self._tails.clear()

    def mark_new_key(self, app_id: int, key: str) -> None:
        self._tails[(app_id, key)] = None

    def place(self, conn: Connection, *, app_id: int, key: str, at_ms: int, timeout_ms: int | None,
              user_id: int, external_id: str | None, now_ms: int, flush: Callable[[], None]) -> int:
        """The session for a new interaction; `flush` writes the batch's pending rows before any lookup by time."""
        cache_key = (app_id, key)
        if cache_key in self._tails:
            tail = self._tails[cache_key]
        else:
            tail = self._tails[cache_key] = self._stored_tail(conn, app_id, key)
        if tail is None or at_ms >= tail.at_ms:
            if tail is not None and linked(tail.at_ms, tail.timeout_ms, at_ms):
                session_id = tail.session_id
            else:
                session_id = self._new_session(conn, app_id, user_id, external_id, now_ms)
            self._tails[cache_key] = Tail(at_ms, timeout_ms, session_id)
            return session_id
        flush()
        session_id = self._place_between(conn, app_id, key, at_ms, timeout_ms, user_id, now_ms)
        self._tails[cache_key] = self._stored_tail(conn, app_id, key)
        return session_id

    def _place_between(self, conn: Connection, app_id: int, key: str, at_ms: int, timeout_ms: int | None,
                       user_id: int, now_ms: int) -> int:
        same_key = (_interactions.c.app_id == app_id) & (_interactions.c.session_key == key)
        columns = (_interactions.c.request_at, _interactions.c.session_timeout_ms, _interactions.c.session_id)
        before = conn.execute(select(*columns).where(same_key, _interactions.c.request_at <= at_ms).order_by(
            _interactions.c.request_at.desc(), _interactions.c.id.desc()).limit(1)).first()
        after = conn.execute(select(*columns).where(same_key, _interactions.c.request_at > at_ms).order_by(
            _interactions.c.request_at, _interactions.c.id).limit(1)).first()
        joins_before = before is not None and linked(before.request_at, before.session_timeout_ms, at_ms)
        joins_after = after is not None and linked(at_ms, timeout_ms, after.request_at)
        were_together = before is not None and after is not None and before.session_id == after.session_id

        if joins_before:
            session_id = before.session_id
        elif joins_after and not were_together:
            return after.session_id  # the new one opens the session that followed it
        else:
            session_id = self._new_session(conn, app_id, user_id, None, now_ms)

        if were_together and not joins_after:  # the new gap splits the session that spanned it
            self._move_later(conn, before.session_id, at_ms,
                             self._new_session(conn, app_id, user_id, None, now_ms), now_ms)
        elif were_together and not joins_before:  # the new one heads the later half
            self._move_later(conn, before.session_id, at_ms, session_id, now_ms)
        elif joins_after and not were_together:  # the new one bridges two sessions
            conn.execute(update(_interactions).where(_interactions.c.session_id == after.session_id)
                         .values(session_id=session_id, updated_at=now_ms))
            conn.execute(update(_sessions).where(_sessions.c.id == after.session_id).values(merged_into=session_id))
        return session_id

    @staticmethod
    def _move_later(conn: Connection, session_id: int, after_ms: int, new_session_id: int, now_ms: int) -> None:
        conn.execute(update(_interactions)
                     .where(_interactions.c.session_id == session_id, _interactions.c.request_at > after_ms)
                     .values(session_id=new_session_id, updated_at=now_ms))

    @staticmethod
    def _stored_tail(conn: Connection, app_id: int, key: str) -> Tail | None:
        row = conn.execute(
            select(_interactions.c.request_at, _interactions.c.session_timeout_ms, _interactions.c.session_id)
            .where(_interactions.c.app_id == app_id, _interactions.c.session_key == key)
            .order_by(_interactions.c.request_at.desc(), _interactions.c.id.desc()).limit(1)
        ).first()
        return Tail(*row) if row is not None else None

    @staticmethod
    def _new_session(conn: Connection, app_id: int, user_id: int, external_id: str | None, now_ms: int) -> int:
        if external_id is not None:
            # An explicit session keeps one row for good; it may exist with no interactions cached here.
            existing = conn.execute(select(_sessions.c.id).where(
                _sessions.c.app_id == app_id, _sessions.c.external_id == external_id)).scalar()
            if existing is not None:
                return existing
        return conn.execute(insert(_sessions).returning(_sessions.c.id), {
            "app_id": app_id, "external_id": external_id, "user_id": user_id, "created_at": now_ms,
        }).scalar_one()
