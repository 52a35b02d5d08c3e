"""Group commit: concurrent webhooks share one transaction, and each still answers only
after that transaction committed. On SQLite (one writer) this turns N commits, N fsyncs and N
thread hops into one of each.

With ``inline`` (a SQLite file, or PostgreSQL) a batch runs on the event loop's own thread up
to its COMMIT, which (with its fsync) goes to a worker thread: run in a worker, the
statements would make that thread and the loop's trade the GIL at every statement, CPU that
inline batches save. The loop's thread never waits on another transaction's locks: the unit
is ``nowait`` (see ``Store.transaction``), and when it finds a lock held (``StoreBusy``:
SQLite's write lock at BEGIN, a PostgreSQL row lock held past a short timeout) the batch,
rolled back, runs again in a worker thread and waits there. What the loop does wait for is
the database's own work: in process on SQLite, a loopback or LAN round trip per statement on
PostgreSQL (four per batch; a dead server fails the connection within
``PG_TCP_USER_TIMEOUT_MS``). Hence on PostgreSQL only batches of ``inline_from`` jobs or more
run inline: a lone webhook (light load) runs in a worker thread, leaving the loop free to
answer and send pages during its round trips, where running it inline gains nothing; under
load, batches grow and the CPU saved inline counts."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import structlog

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreBusy
from ticketbridge.adapters.store.unit_of_work import UnitOfWork

T = TypeVar("T")
ItemT = TypeVar("ItemT")
log = structlog.get_logger("ticketbridge.writer")


Many = Callable[[UnitOfWork, list[Any]], list[Any]]


class _Job(Generic[T]):
    """A write: ``fn(uow)``, or ``item`` for ``many`` (run with its neighbours' items)."""

    __slots__ = ("fn", "future", "item", "many")

    def __init__(
        self,
        fn: Callable[[UnitOfWork], T] | None,
        future: asyncio.Future[T],
        many: Many | None = None,
        item: Any = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.many = many
        self.item = item


def _run_jobs(uow: UnitOfWork, batch: list[_Job[Any]]) -> list[Any]:
    """Each job's result, in order; neighbouring jobs of the same ``many`` run as one call."""
    results: list[Any] = []
    start = 0
    while start < len(batch):
        job = batch[start]
        if job.many is None:
            assert job.fn is not None
            results.append(job.fn(uow))
            start += 1
            continue
        end = start + 1
        while end < len(batch) and batch[end].many == job.many:  # bound methods: ==
            end += 1
        found = job.many(uow, [j.item for j in batch[start:end]])
        if len(found) != end - start:
            raise RuntimeError("a batched write returned the wrong number of results")
        results.extend(found)
        start = end
    return results


async def _end(
    unit: contextlib.AbstractContextManager[Any], exc: Exception | None
) -> Exception | None:
    """Leave ``unit`` in a worker thread: commit (``exc`` None) or roll back; the error that
    ended it, if any (the store's own, e.g. ``StoreUnavailable``, when it raised one)."""
    args = (None, None, None) if exc is None else (type(exc), exc, exc.__traceback__)
    try:
        await asyncio.get_running_loop().run_in_executor(None, unit.__exit__, *args)
    except Exception as raised:
        return raised
    return exc


class GroupCommit:
    """Runs write jobs in batches of up to ``max_batch``, one transaction per batch."""

    def __init__(
        self,
        *,
        store: Store,
        run_db: Callable[[Callable[[], Any]], Awaitable[Any]],
        max_batch: int = 64,
        inline: Callable[[], anyio.CapacityLimiter] | None = None,
        inline_from: int = 1,
        linger: float = 0.0,
        linger_step: float = 0.001,
    ) -> None:
        self._store = store
        self._run_db = run_db
        self._max = max_batch
        self._inline = inline
        self._inline_from = inline_from
        self._linger = linger
        self._linger_step = linger_step
        self._last = 0  # the size of the batch committed last
        # The jobs waiting, and what ``_run`` awaits while there are none (a deque and a
        # future: an ``asyncio.Queue``'s bookkeeping cost more per job).
        self._jobs: deque[_Job[Any]] = deque()
        self._arrived: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, fn: Callable[[UnitOfWork], T]) -> asyncio.Future[T]:
        """Run ``fn`` in a transaction shared with other jobs: a future of its result, done
        once that transaction committed."""
        return self._enqueue(fn, None, None)

    def submit_many(
        self, many: Callable[[UnitOfWork, list[ItemT]], list[T]], item: ItemT
    ) -> asyncio.Future[T]:
        """Like ``submit`` for ``many(uow, [item])``; the items of neighbouring jobs with the
        same ``many`` are passed in one call (e.g. to write them set-wise), each caller
        getting its own item's result."""
        return self._enqueue(None, many, item)

    def _enqueue(
        self, fn: Callable[[UnitOfWork], T] | None, many: Many | None, item: Any
    ) -> asyncio.Future[T]:
        # Plain functions returning the future (not coroutines awaiting it): two coroutine
        # frames fewer per webhook, and the job is queued when submitted.
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(fn, future, many, item))  # unbounded: never waits
        arrived = self._arrived
        if arrived is not None:
            self._arrived = None
            if not arrived.done():
                arrived.set_result(None)
        return future

    async def _next_job(self) -> _Job[Any]:
        """The oldest job waiting, once there is one."""
        while not self._jobs:
            arrived = self._arrived = asyncio.get_running_loop().create_future()
            await arrived
        return self._jobs.popleft()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            first = self._jobs.popleft() if self._jobs else await self._next_job()
            if self._linger > 0 and self._last > 1:
                try:
                    await self._wait_for_company()
                except asyncio.CancelledError:
                    first.future.cancel()
                    raise
            batch = [first]
            jobs = self._jobs
            while len(batch) < self._max and jobs:
                batch.append(jobs.popleft())
            batch = [job for job in batch if not job.future.cancelled()]
            self._last = len(batch)
            if not batch:
                continue
            try:
                if self._inline is not None and len(batch) >= self._inline_from:
                    results = await self._commit_inline(batch, self._inline())
                else:
                    results = await self._run_db(lambda b=batch: self._commit(b))  # type: ignore[misc]
            except Exception as exc:  # the whole batch failed: every caller learns why
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, (ok, value) in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    async def _wait_for_company(self) -> None:
        """After a batch of several jobs, let the next one gather as many (``linger``).

        Under load the jobs come in waves: the callers a batch answers send their next
        requests while a few stragglers, queued during that batch, would otherwise start the
        next batch alone, and batches alternate between a few jobs and nearly all of them,
        each paying a transaction's fixed cost (on PostgreSQL its round trips). So the writer
        waits, ``linger_step`` at a time, while jobs keep arriving, until as many are queued as
        the last batch held, none arrived during a step, or ``linger`` has passed. After a
        batch of one job (light load) nothing waits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        wanted = self._last - 1  # the first job is already taken (a batch is at most max)
        queued = len(self._jobs)
        while queued < wanted and loop.time() < deadline:
            await asyncio.sleep(self._linger_step)
            now_queued = len(self._jobs)
            if now_queued == queued:
                return
            queued = now_queued

    async def _commit_inline(
        self, batch: list[_Job[Any]], slot: anyio.CapacityLimiter
    ) -> list[tuple[bool, Any]]:
        """``_commit`` on this thread, holding ``slot`` (the store's); COMMIT in a worker."""
        values: list[Any] = []
        error: Exception | None = None
        async with slot:
            unit = self._store.unit_of_work(nowait=True)
            try:
                uow = unit.__enter__()
            except StoreBusy:
                busy = True
            else:
                busy = False
                try:
                    values = _run_jobs(uow, batch)
                except Exception as exc:
                    error = await _end(unit, exc)
                else:
                    error = await _end(unit, None)
                busy = isinstance(error, StoreBusy)  # rolled back: nothing of it was kept
        if busy:  # another transaction holds a lock: wait for it in a worker thread, not here
            outcomes: list[tuple[bool, Any]] = await self._run_db(lambda: self._commit(batch))
            return outcomes
        if error is None:
            return [(True, value) for value in values]
        if len(batch) == 1:
            raise error
        return await self._run_db(lambda: self._each_alone(batch))  # type: ignore[no-any-return]

    def _commit(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        try:
            with self._store.unit_of_work() as uow:
                return [(True, value) for value in _run_jobs(uow, batch)]
        except Exception:
            if len(batch) == 1:
                raise
        return self._each_alone(batch)

    def _each_alone(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        """One job failed and took the batch with it: run each alone so only it fails."""
        outcomes: list[tuple[bool, Any]] = []
        for job in batch:
            try:
                with self._store.unit_of_work() as uow:
                    outcomes.append((True, _run_jobs(uow, [job])[0]))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
