"""The storage process: it owns the ingest transactions, so the web process's one core only serves requests.

The web process sends each batch down a pipe; this process stores it in one transaction, commits, and only
then replies, so an acknowledgement still means the rows are durable. A batch that the store refuses is retried
one job at a time, so one bad job does not sink the others; a batch that fails because the store is unavailable
(full disk, lost connection) fails whole, as a retry one by one would fail the same way.
"""

import logging
import multiprocessing
import signal

from tally.ingest.batch import store_batch
from tally.ingest.cache import StoreCache
from tally.store.engine import build_engine, failure_reason, transient_failure, writing
from tally.store.logs import QuietLog
from tally.store.settings import Settings

log = logging.getLogger(__name__)


class StorageFailed(RuntimeError):
    """A job the storage process could not store: `transient` if a retry may succeed, with a one-line reason."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason, transient)  # both in `args`, so that it crosses the pipe (pickled) whole
        self.reason, self.transient = reason, transient


def context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """forkserver: new storage processes fork from a clean, preloaded server, not from a threaded web process."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tally.ingest.storage_process"])
        return ctx
    return multiprocessing.get_context("spawn")


def serve(settings: Settings, pipe) -> None:
    """Store batches from `pipe` until it closes or sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the web process decides when to stop
    # Immediate transactions on SQLite: a batch reads (users, sessions) before it writes, and a deferred
    # transaction that another connection wrote under in between fails at once with "database is locked".
    engine = writing(build_engine(settings))
    quiet, cache = QuietLog(log), StoreCache()
    try:
        while True:
            try:
                jobs = pipe.recv()
            except EOFError:
                return
            if jobs is None:
                return
            pipe.send(commit(engine, jobs, quiet, cache))
    finally:
        engine.dispose()


def commit(engine, jobs: list, quiet: QuietLog, cache: StoreCache) -> list:
    try:
        return _commit_together(engine, jobs, cache)
    except Exception as error:
        if len(jobs) == 1 or transient_failure(error):
            quiet.failure(f"storing a batch of {len(jobs)} failed", error)
            return [_failed(error)] * len(jobs)
        quiet.failure(f"storing a batch of {len(jobs)} failed; storing its jobs one by one", error)
    results = []
    for job in jobs:
        try:
            results.append(_commit_together(engine, [job], cache)[0])
        except Exception as error:
            quiet.failure("storing one job failed", error)
            results.append(_failed(error))
    return results


def _failed(error: BaseException) -> StorageFailed:
    return StorageFailed(failure_reason(error), transient_failure(error))


def _commit_together(engine, jobs: list, cache: StoreCache) -> list:
    try:
        with engine.begin() as conn:
            return store_batch(conn, jobs, cache)
    except BaseException:
        cache.forget()  # it may name rows, and hold changes, that were rolled back
        raise
