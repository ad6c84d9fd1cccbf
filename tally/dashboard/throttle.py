"""The login throttle: every attempt is counted in the store before its password is checked, atomically, per
client address and per account, so that concurrent tries, other replicas and restarts change nothing.

An address gets ADDRESS_FREE attempts per window, then waits twice as long after each further one (1 s, 2 s, 4 s
… up to a quarter of an hour): a guesser slows down exponentially. An account gets ACCOUNT_FREE attempts per
window from anywhere, then one a minute: a stranger who knows the email cannot lock its owner out for longer than
that. A successful login clears both.
"""

from sqlalchemy import Engine, delete, text, update

from tally.store.engine import writing
from tally.store.models import LoginThrottle, table_of

WINDOW_MS = 15 * 60_000
ADDRESS_FREE, ACCOUNT_FREE = 10, 20
MAX_BACKOFF_MS, ACCOUNT_PACE_MS = 15 * 60_000, 60_000
_throttle = table_of(LoginThrottle)
# One statement per key: the count goes up, or starts again once the window is over, and comes back.
_COUNT = text("""
    INSERT INTO login_throttle (key, attempts, window_start, blocked_until) VALUES (:key, 1, :now, 0)
    ON CONFLICT (key) DO UPDATE SET
        attempts = CASE WHEN login_throttle.window_start <= :expired THEN 1 ELSE login_throttle.attempts + 1 END,
        window_start = CASE WHEN login_throttle.window_start <= :expired THEN :now
                            ELSE login_throttle.window_start END
    RETURNING attempts, blocked_until""")


def address_key(address: str) -> str:
    return f"client:{address}"


def account_key(email: str) -> str:
    return f"email:{email.strip().lower()}"[:400]


def attempt(engine: Engine, *, address: str, email: str, now: int) -> int:
    """Counts one login attempt; the milliseconds to wait before trying again, or 0 to go ahead and check it."""
    waits = []
    with writing(engine).begin() as conn:
        for key, free in ((address_key(address), ADDRESS_FREE), (account_key(email), ACCOUNT_FREE)):
            attempts, blocked_until = conn.execute(_COUNT, {"key": key, "now": now,
                                                            "expired": now - WINDOW_MS}).one()
            if blocked_until > now:
                waits.append(blocked_until - now)
            elif attempts > free:
                pause = (min(MAX_BACKOFF_MS, 1000 * 2 ** (attempts - free - 1)) if key.startswith("client:")
                         else ACCOUNT_PACE_MS)
                conn.execute(update(_throttle).where(_throttle.c.key == key).values(blocked_until=now + pause))
                # This attempt is the one that went over: it is still checked; the next waits.
    return max(waits, default=0)


def succeeded(engine: Engine, *, address: str, email: str) -> None:
    with writing(engine).begin() as conn:
        conn.execute(delete(_throttle).where(_throttle.c.key.in_([address_key(address), account_key(email)])))
