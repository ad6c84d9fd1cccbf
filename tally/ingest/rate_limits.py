"""Per-app ingest limits (interactions and bytes per second), shared by every replica of one store.

Each limit is a GCRA bucket (the generic cell rate algorithm, a token bucket kept as one number, the theoretical
arrival time `tat`): a request of cost n is admitted when `max(tat, now) + n·T - now` stays within the burst
tolerance (one second's worth, or the request itself when it is larger, so that a full batch passes an idle
bucket), and then moves `tat` on by n·T, where T = 1000 / rate ms. The long-run rate never exceeds the limit.

On PostgreSQL the buckets live in the store, so every replica draws on the same ones; a replica does not ask the
store for every request but claims a lease of `LEASE_SHARE` of a second's worth at a time, spends it locally and
lets what it did not spend lapse after `LEASE_MS` (so replicas together admit at most the limit; a replica may
admit up to one lease less than it could). On SQLite, which one server serves, the buckets live in its memory.
"""

import asyncio
import math
import time
from dataclasses import dataclass

from sqlalchemy import Engine, text

LEASE_SHARE = 0.05  # of a second's worth of the limit, claimed from the store at once
LEASE_MS = 1000.0  # how long a claimed lease may be spent
KINDS = ("interactions", "bytes")


class RateLimited(Exception):
    """The app sent more than its limit allows; it may try again after `retry_after_ms`."""

    def __init__(self, kind: str, limit: float, retry_after_ms: float) -> None:
        super().__init__(f"this app may send {limit:g} {kind} a second; retry after {retry_after_ms / 1000:.1f} s")
        self.kind, self.limit, self.retry_after_ms = kind, limit, retry_after_ms


def _tolerance(rate: float, cost: float) -> float:
    return max(1000.0, cost * 1000.0 / rate)


def _now_ms() -> float:
    return time.time_ns() / 1e6


class MemoryBuckets:
    """The buckets of a single server, in its memory."""

    def __init__(self) -> None:
        self._tat: dict[tuple[int, str], float] = {}

    async def claim(self, app_id: int, kind: str, cost: float, rate: float) -> float:
        """0 when `cost` is admitted (and taken), else the milliseconds until it would be."""
        now = _now_ms()
        start = max(self._tat.get((app_id, kind), now), now)
        due = start + cost * 1000.0 / rate
        if due - now > _tolerance(rate, cost):
            return due - now - _tolerance(rate, cost)
        self._tat[(app_id, kind)] = due
        return 0.0


_CLAIM = text("""
    INSERT INTO app_rate (app_id, kind, tat) VALUES (:app, :kind, :now + :step)
    ON CONFLICT (app_id, kind) DO UPDATE SET tat = greatest(app_rate.tat, :now) + :step
        WHERE greatest(app_rate.tat, :now) + :step - :now <= :tolerance
    RETURNING tat""")
_TAT = text("SELECT tat FROM app_rate WHERE app_id = :app AND kind = :kind")


@dataclass
class _Lease:
    left: float
    until: float


class StoreBuckets:
    """The buckets in the store (PostgreSQL), claimed in leases: one statement per lease, not per request."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._leases: dict[tuple[int, str], _Lease] = {}

    async def claim(self, app_id: int, kind: str, cost: float, rate: float) -> float:
        now = _now_ms()
        lease = self._leases.get((app_id, kind))
        if lease is not None and lease.until > now and lease.left >= cost:
            lease.left -= cost
            return 0.0
        wanted = max(cost, rate * LEASE_SHARE)
        wait = await asyncio.to_thread(self._claim, app_id, kind, wanted, rate, now)
        if wait and wanted > cost:  # a whole lease is too much now: the request alone may still fit
            wanted = cost
            wait = await asyncio.to_thread(self._claim, app_id, kind, cost, rate, now)
        if wait:
            return wait
        self._leases[(app_id, kind)] = _Lease(wanted - cost, now + LEASE_MS)
        return 0.0

    def _claim(self, app_id: int, kind: str, cost: float, rate: float, now: float) -> float:
        step, tolerance = cost * 1000.0 / rate, _tolerance(rate, cost)
        with self._engine.begin() as conn:
            granted = conn.execute(_CLAIM, {"app": app_id, "kind": kind, "now": now, "step": step,
                                            "tolerance": tolerance}).first()
            if granted is not None:
                return 0.0
            tat = conn.execute(_TAT, {"app": app_id, "kind": kind}).scalar_one()
        return max(tat + step - now - tolerance, 1.0)


class RateLimiter:
    """Admits or refuses an app's interactions and bytes against its limits (None or 0: no limit)."""

    def __init__(self, engine: Engine) -> None:
        self._buckets = MemoryBuckets() if engine.dialect.name == "sqlite" else StoreBuckets(engine)

    async def admit(self, app_id: int, *, interactions: int, size: int, per_second: float | None,
                    bytes_per_second: float | None) -> None:
        """Takes the request's share of both limits, or raises RateLimited (taking neither is not promised: a
        request refused for its bytes has used its interactions' share, which is as a client flooding deserves)."""
        for kind, cost, rate in (("interactions", interactions, per_second), ("bytes", size, bytes_per_second)):
            if rate and cost > 0:
                wait = await self._buckets.claim(app_id, kind, float(cost), float(rate))
                if wait > 0:
                    raise RateLimited(kind, rate, wait)


def retry_after_seconds(error: RateLimited) -> int:
    """Whole seconds for a Retry-After header: at least 1."""
    return max(1, math.ceil(error.retry_after_ms / 1000))
