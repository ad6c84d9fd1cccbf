"""Logging that stays readable when something fails over and over."""

import logging
import time

from tally.store.engine import failure_reason


class QuietLog:
    """Logs the first failure of each kind with its traceback, then one line per `every` seconds counting the
    repeats: a full disk must not write a hundred tracebacks a second."""

    def __init__(self, log: logging.Logger, every: float = 30.0) -> None:
        self.log, self.every = log, every
        self._last: dict[str, float] = {}
        self._repeats: dict[str, int] = {}

    def failure(self, message: str, error: BaseException) -> None:
        kind = failure_reason(error)
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None:
            self._last[kind] = now
            self.log.error("%s: %s", message, kind, exc_info=error)
            return
        self._repeats[kind] = self._repeats.get(kind, 0) + 1
        if now - last >= self.every:
            self.log.error("%s: %s (%d times in the last %.0f s)", message, kind, self._repeats.pop(kind), now - last)
            self._last[kind] = now
