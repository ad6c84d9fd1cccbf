"""Group commit: requests wait while the storage process stores everything queued so far in one transaction.

A request is answered only after the transaction holding its row has committed, so a 2xx still means durably
stored; under load one commit (one fsync on SQLite) serves hundreds of requests.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from tally.ingest import storage_process
from tally.store.settings import Settings

log = logging.getLogger(__name__)


class WriterOverloaded(RuntimeError):
    """More writes are queued than the configured limit; the client should retry later."""


class GroupCommitWriter:
    def __init__(self, settings: Settings, *, max_batch: int, max_pending: int) -> None:
        self._settings = settings
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._queue: asyncio.Queue = asyncio.Queue()
        # One thread talks to the storage process, so batches reach it one at a time and in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-writer")
        self._task: asyncio.Task | None = None
        self._process = self._pipe = None

    def start(self) -> None:
        self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-writer")

    @property
    def storage_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _spawn(self) -> None:
        ctx = storage_process.context()
        self._pipe, child_end = ctx.Pipe()
        self._process = ctx.Process(target=storage_process.serve, args=(self._settings, child_end),
                                    name="tally-storage", daemon=True)
        self._process.start()
        child_end.close()

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
        if self._process is not None:
            try:
                self._pipe.send(None)
            except OSError:
                pass  # it is already gone; nothing of it is left to wait for
            self._process.join(timeout=30)
            self._pipe.close()

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
        """Hand a batch to the storage process and wait for its answer (in the writer thread)."""
        try:
            self._pipe.send(jobs)
            return self._pipe.recv()
        except (EOFError, OSError) as error:
            # The storage process died: what it had not committed is not acknowledged. Start a new one.
            log.error("the storage process stopped (%s); starting a new one", error)
            self._process.join(timeout=5)
            self._spawn()
            return [storage_process.StorageFailed("the storage process stopped")] * len(jobs)
