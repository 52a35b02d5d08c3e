"""``GroupCommit``: jobs submitted together share one transaction, each caller gets its own
result, a failing job fails alone, and a store error reaches the caller (both backends). On a
SQLite file and on PostgreSQL the service runs batches ``inline`` (on the event loop's thread
up to COMMIT); the tests run that mode too, and check that a lock held by another transaction
(SQLite's write lock, a PostgreSQL row lock) is waited for off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from tests.virtual_time import on_virtual_time
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreError, StoreUnavailable
from ticketbridge.adapters.store.postgres import PG_NOWAIT_LOCK_MS
from ticketbridge.adapters.store.schema import policies
from ticketbridge.adapters.store.unit_of_work import UnitOfWork
from ticketbridge.app.bootstrap import PG_LINGER_MS, Services
from ticketbridge.app.workers.group_commit import GroupCommit


@pytest.fixture(params=["worker", "inline"])
def mode(request: pytest.FixtureRequest, store: Store) -> str:
    if request.param == "inline" and not store.supports_nowait:
        return "worker"  # not inline on an in-memory database; the worker case already runs
    return str(request.param)


def _writer(
    store: Store, mode: str = "worker", inline_from: int = 1, **options: Any
) -> tuple[GroupCommit, list[int]]:
    """A writer, and the size of each batch it committed through ``run_db`` (worker mode)."""
    slot = anyio.CapacityLimiter(store.max_concurrency)
    batches: list[int] = []

    async def run_db(fn: Any) -> Any:
        result = await anyio.to_thread.run_sync(fn, limiter=slot)
        batches.append(len(result))
        return result

    inline = (lambda: slot) if mode == "inline" else None
    writer = GroupCommit(
        store=store, run_db=run_db, inline=inline, inline_from=inline_from, **options
    )
    return writer, batches


def _save(name: str) -> Any:
    def job(uow: UnitOfWork) -> str:
        uow.save_policy(name, {"name": name}, at=1.0)
        return name

    return job


def _saved(store: Store) -> set[str]:
    with store.transaction() as conn:
        return set(conn.scalars(sa.select(policies.c.fingerprint)))


async def test_jobs_submitted_together_share_a_transaction_and_get_their_results(
    store: Store, mode: str
) -> None:
    writer, batches = _writer(store, mode)
    threads: list[int] = []

    def where(uow: UnitOfWork) -> None:
        threads.append(threading.get_ident())

    try:
        results = await asyncio.gather(
            *(writer.submit(_save(f"p{i}")) for i in range(8)), writer.submit(where)
        )
    finally:
        await writer.close()
    assert results == [*(f"p{i}" for i in range(8)), None]
    assert _saved(store) == {f"p{i}" for i in range(8)}
    # Queued while the writer was idle: one batch, one commit; inline on this very thread.
    assert batches == ([] if mode == "inline" else [9])
    assert (threads == [threading.get_ident()]) is (mode == "inline")


async def test_inline_only_from_a_batch_size(store: Store) -> None:
    """With ``inline_from`` (PostgreSQL's setting), a lone job runs in a worker thread and a
    batch that large runs on the loop's thread."""
    assert store.supports_nowait  # a SQLite file or PostgreSQL
    writer, batches = _writer(store, "inline", inline_from=4)
    threads: list[int] = []

    def where(uow: UnitOfWork) -> None:
        threads.append(threading.get_ident())

    try:
        await writer.submit(where)  # alone
        await asyncio.gather(*(writer.submit(where) for _ in range(6)))  # one batch of six
    finally:
        await writer.close()
    assert batches == [1]
    assert threads[0] != threading.get_ident()
    assert threads[1:] == [threading.get_ident()] * 6


async def _wave_then_trickle(writer: GroupCommit, trickle: int, gap: float, wave: int = 6) -> None:
    """``wave`` jobs at once (one batch), then ``trickle`` more ``gap`` seconds apart."""
    await asyncio.gather(*(writer.submit(_save(f"w{i}")) for i in range(wave)))
    pending = []
    for i in range(trickle):
        pending.append(asyncio.ensure_future(writer.submit(_save(f"t{i}"))))
        await asyncio.sleep(gap)
    await asyncio.gather(*pending)


@pytest.mark.parametrize("linger", [0.0, 0.5])
async def test_after_a_batch_of_several_the_next_waits_for_company(
    store: Store, linger: float
) -> None:
    """With ``linger`` the jobs trickling in after a batch of six join one batch (they keep
    arriving within each step) instead of the first of them going alone."""
    writer, batches = _writer(store, linger=linger, linger_step=0.1)
    try:
        await _wave_then_trickle(writer, trickle=5, gap=0.005)
    finally:
        await writer.close()
    assert batches[0] == 6
    if linger:
        assert batches[1:] == [5]
    else:
        assert batches[1] == 1  # the first straggler went alone
    assert len(_saved(store)) == 11


async def test_the_wait_for_company_is_bounded(store: Store) -> None:
    """Jobs that keep coming do not hold a batch back past ``linger`` (plus one step)."""
    writer, batches = _writer(store, linger=0.05, linger_step=0.01, max_batch=64)
    try:
        await _wave_then_trickle(writer, trickle=40, gap=0.005, wave=60)  # 0.2 s of arrivals
    finally:
        await writer.close()
    assert batches[0] == 60
    assert 1 < batches[1] <= 20, batches  # about 0.06 s worth of them, never all 40
    assert sum(batches) == 100


def test_after_a_lone_job_nothing_waits(store: Store) -> None:
    """Timed on the writer's own clock (the loop's, virtual here): a step is 0.5 s."""

    async def main() -> tuple[list[int], float, float]:
        loop = asyncio.get_running_loop()
        writer, batches = _writer(store, linger=2.0, linger_step=0.5)
        try:
            await writer.submit(_save("first"))
            started = loop.time()
            await writer.submit(_save("second"))
            elapsed = loop.time() - started
            await asyncio.gather(*(writer.submit(_save(f"w{i}")) for i in range(3)))
            started = loop.time()
            await writer.submit(_save("after-three"))  # nothing else comes: one step, no more
            waited = loop.time() - started
        finally:
            await writer.close()
        return batches, elapsed, waited

    batches, elapsed, waited = on_virtual_time(main)
    assert batches == [1, 1, 3, 1]
    assert elapsed == 0  # no step waited after a lone job
    assert waited == 0.5  # one step waited after the batch of three, not the whole linger


async def test_a_failing_job_fails_alone_and_the_others_commit(store: Store, mode: str) -> None:
    def boom(uow: UnitOfWork) -> None:
        uow.save_policy("doomed", {}, at=1.0)
        raise ValueError("this job is broken")

    writer, _ = _writer(store, mode)
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
    store: Store, mode: str
) -> None:
    def duplicate(uow: UnitOfWork) -> None:
        uow.conn.execute(sa.insert(policies).values(fingerprint="x", document={}, created_at=1))
        uow.conn.execute(sa.insert(policies).values(fingerprint="x", document={}, created_at=1))

    writer, _ = _writer(store, mode)
    try:
        with pytest.raises(StoreError) as raised:
            await writer.submit(duplicate)
        assert isinstance(raised.value.__cause__, sa.exc.IntegrityError)
        assert await writer.submit(_save("after")) == "after"
    finally:
        await writer.close()
    assert _saved(store) == {"after"}


async def test_inline_a_lock_held_by_another_process_is_waited_for_off_the_loop(
    tmp_path: Path,
) -> None:
    """Another process holds the SQLite file's write lock: the inline BEGIN does not wait on
    the event loop's thread (``StoreBusy``); the batch waits in a worker thread, the loop
    stays free meanwhile, and the job commits once the lock is released."""
    path = tmp_path / "tb.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    writer, batches = _writer(store, "inline")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
    try:
        job = asyncio.ensure_future(writer.submit(_save("waited")))
        gaps: list[float] = []
        last = time.monotonic()
        for _ in range(50):  # 1 s of ticks: the loop keeps running while the writer waits
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert not job.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(job, 10) == "waited"
    finally:
        other.close()
        await writer.close()
    # The loop's thread never waited on the lock, which was held for the whole second; the
    # bound leaves room for a busy machine's scheduling, not for a wait on the lock.
    assert max(gaps) < 0.5
    assert batches == [1]  # the busy batch went through ``run_db``
    assert _saved(store) == {"waited"}
    store.close()


async def test_inline_a_row_lock_held_by_another_transaction_is_waited_for_off_the_loop(
    postgresql_server: Any,
) -> None:
    """PostgreSQL: another transaction inserted the same key and has not committed. The
    inline batch's INSERT waits for it at most ``PG_NOWAIT_LOCK_MS`` on the loop's thread,
    rolls back (``StoreBusy``) and runs again in a worker thread, which waits for the other
    transaction; the loop stays free meanwhile, and the job's result comes once that commits
    (here: the key was taken, so the job inserts nothing and still succeeds)."""
    database = postgresql_server.migrated()
    store = Store(postgresql_server.url(database))
    writer, batches = _writer(store, "inline")
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    other = psycopg.connect(url)
    other.execute(
        "INSERT INTO policies (fingerprint, document, created_at) VALUES ('held', '{}', 1)"
    )
    gaps: list[float] = []
    try:
        job = asyncio.ensure_future(writer.submit(_save("held")))
        last = time.monotonic()
        for _ in range(40):  # 0.8 s of ticks: the loop keeps running while the writer waits
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert not job.done()
        other.commit()
        assert await asyncio.wait_for(job, 10) == "held"
    finally:
        other.close()
        await writer.close()
    # The loop's thread waited on the lock once, for about the lock timeout, not for the
    # whole time the other transaction held it.
    assert PG_NOWAIT_LOCK_MS <= 500
    assert max(gaps) < 0.8  # the other transaction held its lock for 0.8 s and more
    assert sum(1 for gap in gaps if gap > 0.1) <= 1
    assert batches == [1]  # the busy batch went through ``run_db``
    assert _saved(store) == {"held"}
    store.close()
    postgresql_server.drop(database)


async def test_inline_a_broken_connection_fails_the_batch_as_unavailable_then_recovers(
    postgresql_server: Any,
) -> None:
    """PostgreSQL: the server ended the pooled connection. An inline batch fails with
    ``StoreUnavailable`` (the webhook's 503, not a driver error and a 500), the connection is
    dropped from the pool, and the next batch commits on a new one."""
    database = postgresql_server.migrated()
    store = Store(postgresql_server.url(database))
    writer, _ = _writer(store, "inline")
    try:
        assert await writer.submit(_save("before")) == "before"  # a pooled connection now
        url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        outcomes = await asyncio.gather(
            *(writer.submit(_save(f"lost{i}")) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
        assert await writer.submit(_save("after")) == "after"
    finally:
        await writer.close()
    assert _saved(store) == {"before", "after"}
    store.close()
    postgresql_server.drop(database)


def test_the_service_lingers_on_postgresql_unless_told_otherwise(
    store: Store, policy: Any, clock: Any
) -> None:
    """By default only PostgreSQL's group commit waits for company (a transaction costs round
    trips there); ``TICKETBRIDGE_GROUP_COMMIT_LINGER_MS`` sets it on either backend."""
    chosen = Services(settings=make_settings(), store=store, policy=policy, clock=clock)
    assert chosen.linger_ms == (0.0 if store.is_sqlite else PG_LINGER_MS)
    told = make_settings(group_commit_linger_ms=1.5)
    assert Services(settings=told, store=store, policy=policy, clock=clock).linger_ms == 1.5
    with pytest.raises(ValueError, match="group_commit_linger_ms"):
        make_settings(group_commit_linger_ms=-1)
