"""Group commit: requests wait while the storage process stores everything queued so far in one transaction.

A request is answered only after the transaction holding its row has committed, so a 2xx still means durably
stored; under load one commit (one fsync on SQLite) serves hundreds of requests.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from tally.ingest import storage_process
from tally.store.settings import Settings

log = logging.getLogger(__name__)


TARGET_COMMIT_SECONDS = 0.01  # how long one transaction should take; see CommitPace.batch_size
MIN_BATCH = 8


class CommitPace:
    """How long a transaction of n writes takes, learned as `fixed + per_write * n` by least squares over the
    batches seen, older ones weighing less. The fixed part (round trips, the commit's fsync) is what batching
    spares: on PostgreSQL it is most of a small batch's time, so a rule on the mean time per write alone (fixed
    part included) would keep batches small because they are small (measured: batches of 8, 470/s)."""

    DECAY = 0.95  # each batch's weight falls by this at every later one: about the last 20 batches count

    def __init__(self) -> None:
        self._sums = [0.0] * 5  # weight, Σn, Σt, Σn², Σnt
        self.fixed: float | None = None
        self.per_write: float | None = None

    def learn(self, writes: int, seconds: float) -> None:
        sums = [value * self.DECAY for value in self._sums]
        for index, value in enumerate((1.0, writes, seconds, writes * writes, writes * seconds)):
            sums[index] += value
        self._sums = sums
        weight, n, t, nn, nt = sums
        mean_n, mean_t = n / weight, t / weight
        spread = nn / weight - mean_n ** 2
        # Batches of different sizes tell the two parts apart, unless noise (one slow small batch) says that
        # more writes take less time; then, as when all are of one size, keep the fixed part learned before.
        per_write = (nt / weight - mean_n * mean_t) / spread if spread > 1.0 else 0.0
        if per_write > 0:
            self.per_write, self.fixed = per_write, max(mean_t - per_write * mean_n, 0.0)
        else:
            self.fixed = min(self.fixed or 0.0, mean_t)
            self.per_write = max((mean_t - self.fixed) / mean_n, 1e-6)

    def batch_size(self, least: int, most: int) -> int:
        """As many writes as commit in about TARGET_COMMIT_SECONDS, or, where the fixed part alone takes most of
        that, in four times the fixed part (so that it is at most a quarter of a transaction): a write arriving
        while a transaction runs waits for a short one, not for `most` rows. Past a few dozen rows a bigger
        transaction stores no more per second (measured on SQLite: 2,081/s at 512 rows, 2,196/s at 64)."""
        if self.per_write is None or self.fixed is None:
            return most
        budget = max(TARGET_COMMIT_SECONDS, 4 * self.fixed) - self.fixed
        return max(least, min(most, int(budget / self.per_write)))


class WriterOverloaded(RuntimeError):
    """More writes are queued than the configured limit; the client should retry later."""


class FairQueue:
    """Writes queued per app and taken in turn, one of each app at a time: a flood from one app queues behind
    itself, and another app's write goes into the next batch whatever the flood's size."""

    def __init__(self) -> None:
        self._apps: dict[int, deque] = {}  # in turn order: an app that still has writes goes to the back
        self._size = 0
        self._unfinished = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def qsize(self) -> int:
        return self._size

    def put(self, app_id: int, item) -> None:
        self._apps.setdefault(app_id, deque()).append(item)
        self._size += 1
        self._unfinished += 1
        self._ready.set()
        self._idle.clear()

    async def take(self, most: int) -> list:
        """At least one write (waiting for it), at most `most`, the apps taking turns."""
        await self._ready.wait()
        batch: list = []
        while len(batch) < most and self._apps:
            app_id = next(iter(self._apps))
            waiting = self._apps.pop(app_id)
            batch.append(waiting.popleft())
            if waiting:
                self._apps[app_id] = waiting
        self._size -= len(batch)
        if not self._size:
            self._ready.clear()
        return batch

    def done(self, count: int) -> None:
        self._unfinished -= count
        if not self._unfinished:
            self._idle.set()

    async def join(self) -> None:
        """Until every write put has been taken and marked done."""
        await self._idle.wait()


@dataclass(frozen=True)
class _Storage:
    """A running storage process and the writer's end of its pipe."""

    process: BaseProcess
    pipe: Connection


class GroupCommitWriter:
    def __init__(self, settings: Settings, *, max_batch: int, max_pending: int) -> None:
        self._settings = settings
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._queue = FairQueue()
        # One thread talks to the storage process, so batches reach it one at a time and in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-writer")
        self._task: asyncio.Task | None = None
        self._storage: _Storage | None = None
        self.pace = CommitPace()

    def start(self) -> None:
        self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-writer")

    @property
    def storage_pid(self) -> int | None:
        return self._storage.process.pid if self._storage is not None else None

    def _spawn(self) -> _Storage:
        ctx = storage_process.context()
        pipe, child_end = ctx.Pipe()
        process = ctx.Process(target=storage_process.serve, args=(self._settings, child_end), name="tally-storage",
                              daemon=True)
        process.start()
        child_end.close()
        self._storage = _Storage(process, pipe)
        return self._storage

    async def stop(self) -> None:
        """Store what is queued, then stop: nothing that was accepted is dropped on shutdown."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        if self._storage is not None:
            with contextlib.suppress(OSError):  # it is already gone; nothing of it is left to wait for
                self._storage.pipe.send(None)
            self._storage.process.join(timeout=30)
            self._storage.pipe.close()

    async def submit(self, jobs: list) -> list:
        """Store the jobs; each result is a stored record or the exception that job raised."""
        if self._queue.qsize() + len(jobs) > self._max_pending:
            raise WriterOverloaded(f"{self._queue.qsize()} writes are queued")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in jobs]
        for job, future in zip(jobs, futures):
            self._queue.put(job.app_id, (job, future))
        if len(futures) == 1:  # the common case, /track: spare it a gather
            try:
                return [await futures[0]]
            except Exception as error:
                return [error]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._queue.take(self.pace.batch_size(MIN_BATCH, self._max_batch))
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._commit, [job for job, _ in batch])
                self.pace.learn(len(batch), time.perf_counter() - started)
            except Exception as error:  # the writer must outlive any one batch
                log.exception("ingest batch failed")
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    (future.set_exception if isinstance(result, BaseException) else future.set_result)(result)
            self._queue.done(len(batch))

    def _commit(self, jobs: list) -> list:
        """Hand a batch to the storage process and wait for its answer (in the writer thread)."""
        storage = self._storage or self._spawn()
        try:
            storage.pipe.send(jobs)
            return storage.pipe.recv()
        except (EOFError, OSError) as error:
            # The storage process died: what it had not committed is not acknowledged. Start a new one.
            log.error("the storage process stopped (%s); starting a new one", error)
            storage.process.join(timeout=5)
            self._spawn()
            # Whether it committed before dying is unknown: the client retries, and the response id dedupes.
            return [storage_process.StorageFailed("the storage process stopped", True)] * len(jobs)
