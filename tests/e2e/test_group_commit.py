"""``GroupCommit``: jobs submitted together share one transaction, each caller gets its own
result, a failing job fails alone, and a store error reaches the caller (both backends)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from ticketbridge.adapters.store.schema import policies
from ticketbridge.adapters.store.sql import Store, UnitOfWork
from ticketbridge.app.writer import GroupCommit


def _writer(store: Store) -> tuple[GroupCommit, list[int]]:
    """A writer, and the size of each batch it committed (one ``run_db`` call per batch)."""
    slot = anyio.CapacityLimiter(store.max_concurrency)
    batches: list[int] = []

    async def run_db(fn: Any) -> Any:
        result = await anyio.to_thread.run_sync(fn, limiter=slot)
        batches.append(len(result))
        return result

    return GroupCommit(store=store, run_db=run_db), batches


def _save(name: str) -> Any:
    def job(uow: UnitOfWork) -> str:
        uow.save_policy(name, {"name": name}, at=1.0)
        return name

    return job


def _saved(store: Store) -> set[str]:
    with store.transaction() as conn:
        return set(conn.scalars(sa.select(policies.c.fingerprint)))


async def test_jobs_submitted_together_share_a_transaction_and_get_their_results(
    store: Store,
) -> None:
    writer, batches = _writer(store)
    try:
        results = await asyncio.gather(*(writer.submit(_save(f"p{i}")) for i in range(8)))
    finally:
        await writer.close()
    assert results == [f"p{i}" for i in range(8)]
    assert _saved(store) == {f"p{i}" for i in range(8)}
    assert batches == [8]  # queued while the writer was idle: one batch, one commit


async def test_a_failing_job_fails_alone_and_the_others_commit(store: Store) -> None:
    def boom(uow: UnitOfWork) -> None:
        uow.save_policy("doomed", {}, at=1.0)
        raise ValueError("this job is broken")

    writer, _ = _writer(store)
    try:
        outcomes = await asyncio.gather(
            writer.submit(_save("a")),
            writer.submit(boom),
            writer.submit(_save("b")),
            return_exceptions=True,
        )
    finally:
        await writer.close()
    assert outcomes[0] == "a"
    assert outcomes[2] == "b"
    assert isinstance(outcomes[1], ValueError)
    assert _saved(store) == {"a", "b"}  # the failing job's own write was rolled back


async def test_a_lone_job_hitting_a_store_error_raises_it_and_the_writer_goes_on(
    store: Store,
) -> None:
    def duplicate(uow: UnitOfWork) -> None:
        uow.conn.execute(sa.insert(policies).values(fingerprint="x", document={}, created_at=1))
        uow.conn.execute(sa.insert(policies).values(fingerprint="x", document={}, created_at=1))

    writer, _ = _writer(store)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            await writer.submit(duplicate)
        assert await writer.submit(_save("after")) == "after"
    finally:
        await writer.close()
    assert _saved(store) == {"after"}
