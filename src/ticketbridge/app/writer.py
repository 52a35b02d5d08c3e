"""Group commit: concurrent webhooks share one transaction, and each still answers only
after that transaction committed. On SQLite (one writer) this turns N commits, N fsyncs and N
thread hops into one of each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog

from ticketbridge.adapters.store.sql import Store, UnitOfWork

T = TypeVar("T")
log = structlog.get_logger("ticketbridge.writer")


class _Job(Generic[T]):
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[UnitOfWork], T], future: asyncio.Future[T]) -> None:
        self.fn = fn
        self.future = future


class GroupCommit:
    """Runs write jobs in batches of up to ``max_batch``, one transaction per batch."""

    def __init__(
        self,
        *,
        store: Store,
        run_db: Callable[[Callable[[], Any]], Awaitable[Any]],
        max_batch: int = 64,
    ) -> None:
        self._store = store
        self._run_db = run_db
        self._max = max_batch
        self._queue: asyncio.Queue[_Job[Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[[UnitOfWork], T]) -> T:
        """Run ``fn`` in a transaction shared with other jobs; return once it committed."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [job for job in batch if not job.future.cancelled()]
            if not batch:
                continue
            try:
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

    def _commit(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        try:
            with self._store.unit_of_work() as uow:
                return [(True, job.fn(uow)) for job in batch]
        except Exception:
            if len(batch) == 1:
                raise
        # One job failed and took the batch with it: run each alone so only it fails.
        outcomes: list[tuple[bool, Any]] = []
        for job in batch:
            try:
                with self._store.unit_of_work() as uow:
                    outcomes.append((True, job.fn(uow)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
