"""The storage process: it owns the ingest transactions, so the web process's one core only serves requests.

The web process sends each batch down a pipe; this process stores it in one transaction, commits, and only
then replies, so an acknowledgement still means the rows are durable. A batch that fails is retried one job
at a time, so one bad job does not sink the others.
"""

import logging
import multiprocessing
import signal

from tally.ingest.batch import BatchStore
from tally.store.engine import build_engine
from tally.store.settings import Settings

log = logging.getLogger(__name__)


class StorageFailed(RuntimeError):
    """A job the storage process could not store; carries the original error's text."""


def context() -> multiprocessing.context.BaseContext:
    """forkserver: new storage processes fork from a clean, preloaded server, not from a threaded web process."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tally.ingest.storage_process"])
        return ctx
    return multiprocessing.get_context("spawn")


def serve(settings: Settings, pipe) -> None:
    """Store batches from `pipe` until it closes or sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the web process decides when to stop
    engine = build_engine(settings)
    store = BatchStore()
    try:
        while True:
            try:
                jobs = pipe.recv()
            except EOFError:
                return
            if jobs is None:
                return
            pipe.send(commit(engine, store, jobs))
    finally:
        engine.dispose()


def commit(engine, store: BatchStore, jobs: list) -> list:
    try:
        return _commit_together(engine, store, jobs)
    except Exception as error:
        if len(jobs) == 1:
            log.exception("ingest job failed")
            return [StorageFailed(repr(error))]
        log.exception("ingest batch of %d failed; storing its jobs one by one", len(jobs))
    results = []
    for job in jobs:
        try:
            results.append(_commit_together(engine, store, [job])[0])
        except Exception as error:
            log.exception("ingest job failed")
            results.append(StorageFailed(repr(error)))
    return results


def _commit_together(engine, store: BatchStore, jobs: list) -> list:
    try:
        with engine.begin() as conn:
            return store.store(conn, jobs)
    except Exception:
        store.forget()  # the caches may name rows that were rolled back
        raise
