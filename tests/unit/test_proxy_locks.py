"""Lock files shared by the processes serving one store (`serve --workers`).

flock(2) locks belong to an open file description, so two opens in one process contend
like two processes do; the crash case uses a real process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from dockyard.proxy.locks import LockDir, Poll


def test_first_open_holds_and_the_next_watches(tmp_path: Path) -> None:
    locks = LockDir(tmp_path / "locks")
    holder = locks.open("blob-sha256-aa")
    watcher = locks.open("blob-sha256-aa")
    try:
        assert holder.held and not watcher.held
        assert watcher.poll() is Poll.RUNNING
        assert holder.path.exists()
    finally:
        holder.close()
    # The holder removed its file: the watcher knows it finished, and does not hold it.
    assert not (tmp_path / "locks" / "blob-sha256-aa.lock").exists()
    assert watcher.poll() is Poll.FINISHED
    assert not watcher.held
    watcher.close()
    assert locks.open("blob-sha256-aa").held


def test_a_holder_that_dies_hands_the_lock_and_its_record_to_a_watcher(tmp_path: Path) -> None:
    locks = LockDir(tmp_path)
    holder = locks.open("x")
    watcher = locks.open("x")
    holder.write_state({"staging": "uploads/fetch-1", "size": 10})
    holder.close(remove=False)  # what the kernel does for a process that died
    assert watcher.poll() is Poll.TAKEN
    assert watcher.held
    assert watcher.state() == {"staging": "uploads/fetch-1", "size": 10}
    # Whoever comes next sees a held lock.
    assert locks.open("x").poll() is Poll.RUNNING
    watcher.close()
    fresh = locks.open("x")
    assert fresh.held and fresh.state() is None
    fresh.close()


def test_a_file_left_by_a_dead_holder_is_taken_by_the_next_open(tmp_path: Path) -> None:
    locks = LockDir(tmp_path)
    dead = locks.open("x")
    dead.write_state({"staging": "uploads/fetch-old"})
    dead.close(remove=False)
    taker = locks.open("x")
    assert taker.held
    assert taker.state() == {"staging": "uploads/fetch-old"}
    taker.close()


def test_state_is_replaced_whole_and_a_partial_record_reads_as_none(tmp_path: Path) -> None:
    locks = LockDir(tmp_path)
    holder = locks.open("x")
    watcher = locks.open("x")
    assert watcher.state() is None
    holder.write_state({"staging": "uploads/fetch-" + "a" * 100, "size": 1})
    holder.write_state({"error": {"code": "X"}})
    assert watcher.state() == {"error": {"code": "X"}}
    with holder.path.open("wb") as f:
        f.write(b'{"staging": "uploa')  # a record being written
    assert watcher.state() is None
    holder.close()
    watcher.close()


def test_invalid_names_are_refused(tmp_path: Path) -> None:
    locks = LockDir(tmp_path)
    for name in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            locks.open(name)


def _hold_until_killed(directory: str, ready: Connection) -> None:
    lock = LockDir(Path(directory)).open("blob-sha256-bb")
    assert lock.held
    lock.write_state({"staging": "uploads/fetch-child", "pid": os.getpid()})
    ready.send("held")
    time.sleep(120)


def test_a_holder_killed_with_sigkill_does_not_wedge_the_others(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)  # a pipe, not a socket pair
    child = context.Process(target=_hold_until_killed, args=(str(tmp_path), child_end))
    child.start()
    try:
        assert parent_end.poll(60), "the child did not take the lock"
        assert parent_end.recv() == "held"
        locks = LockDir(tmp_path)
        watcher = locks.open("blob-sha256-bb")
        assert not watcher.held
        assert watcher.poll() is Poll.RUNNING
        assert watcher.state() == {"staging": "uploads/fetch-child", "pid": child.pid}
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert watcher.poll() is Poll.TAKEN
        assert watcher.state() == {"staging": "uploads/fetch-child", "pid": child.pid}
        watcher.close()
        assert not (tmp_path / "blob-sha256-bb.lock").exists()
    finally:
        if child.is_alive():
            child.kill()
            child.join(30)


def test_exclusive_waits_for_the_holder_and_gives_up_after_its_patience(tmp_path: Path) -> None:
    locks = LockDir(tmp_path)

    async def main() -> None:
        order: list[str] = []
        holder = locks.open("m")

        async def waiter() -> None:
            async with locks.exclusive("m", patience=30) as held:
                order.append(f"waiter held={held}")

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        assert order == []
        order.append("holder done")
        holder.close()
        await asyncio.wait_for(task, 5)
        assert order == ["holder done", "waiter held=True"]

        stuck = locks.open("m")
        started = time.monotonic()
        async with locks.exclusive("m", patience=0.2) as held:
            assert not held
        assert 0.2 <= time.monotonic() - started < 2
        stuck.close()

    asyncio.run(main())


def test_sweep_removes_only_old_files_that_nobody_holds(tmp_path: Path) -> None:
    locks = LockDir(tmp_path / "locks")
    assert locks.sweep(600) == []  # no directory yet
    dead = locks.open("blob-sha256-dead")
    dead.write_state({"staging": "uploads/fetch-x"})
    dead.close(remove=False)  # as a process killed mid-download leaves it
    live = locks.open("blob-sha256-live")
    fresh = locks.open("blob-sha256-fresh")
    fresh.close(remove=False)
    old = time.time() - 3600
    for name in ("blob-sha256-dead", "blob-sha256-live"):
        os.utime(tmp_path / "locks" / f"{name}.lock", (old, old))
    try:
        assert locks.sweep(600) == ["blob-sha256-dead.lock"]
        remaining = sorted(p.name for p in (tmp_path / "locks").iterdir())
        assert remaining == ["blob-sha256-fresh.lock", "blob-sha256-live.lock"]
        assert live.held and live.poll() is Poll.TAKEN  # the live holder kept its lock
    finally:
        live.close()
    assert locks.sweep(0, now=time.time() + 1) == ["blob-sha256-fresh.lock"]
