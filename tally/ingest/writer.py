"""Group commit: requests wait while one thread stores everything queued so far in a single transaction.

A request is answered only after the transaction holding its row has committed, so a 2xx still means durably
stored; under load one commit (one fsync on SQLite) serves hundreds of requests.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from tally.ingest.batch import BatchStore

log = logging.getLogger(__name__)


class WriterOverloaded(RuntimeError):
    """More writes are queued than the configured limit; the client should retry later."""


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int, max_pending: int) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._store = BatchStore()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-writer")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-writer")

    async def stop(self) -> None:
        """Store what is queued, then stop: nothing that was accepted is dropped on shutdown."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, jobs: list) -> list:
        """Store the jobs; each result is a stored record or the exception that job raised."""
        if self._queue.qsize() + len(jobs) > self._max_pending:
            raise WriterOverloaded(f"{self._queue.qsize()} writes are queued")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in jobs]
        for job, future in zip(jobs, futures):
            self._queue.put_nowait((job, future))
        if len(futures) == 1:  # the common case, /track: spare it a gather
            try:
                return [await futures[0]]
            except Exception as error:
                return [error]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._executor, self._commit, [job for job, _ in batch])
            except Exception as error:  # the writer must outlive any one batch
                log.exception("ingest batch failed")
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    (future.set_exception if isinstance(result, BaseException) else future.set_result)(result)
                self._queue.task_done()

    def _commit(self, jobs: list) -> list:
        try:
            return self._commit_together(jobs)
        except Exception:
            if len(jobs) == 1:
                raise
            log.exception("ingest batch of %d failed; storing its jobs one by one", len(jobs))
        results = []
        for job in jobs:
            try:
                results.append(self._commit_together([job])[0])
            except Exception as error:
                log.exception("ingest job failed")
                results.append(error)
        return results

    def _commit_together(self, jobs: list) -> list:
        try:
            with self._engine.begin() as conn:
                return self._store.store(conn, jobs)
        except Exception:
            self._store.forget()
            raise
