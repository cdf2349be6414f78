"""Following a blob download another process leads: growth, the verified end, failures.

The "leader" here is the test itself, holding the blob's lock file through its own open
file description (flock contends between descriptions as between processes) and writing
the staging file and the records a leading process writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

from dockyard.errors import (
    BlobUnknownError,
    TooManyRequestsError,
    UpstreamBadResponseError,
    UpstreamUnavailableError,
)
from dockyard.metadata import Database
from dockyard.oci.digest import Digest
from dockyard.proxy.download import Download
from dockyard.proxy.fetcher import blob_lock_name
from dockyard.proxy.follow import (
    Follower,
    Outcome,
    failed_state,
    hold_staging,
    recorded_error,
    started_state,
)
from dockyard.proxy.locks import LockDir, LockFile
from dockyard.registry.blobs import LocalBlobStore
from dockyard.storage import FilesystemDriver

CONTENT = os.urandom(300_000)
DIGEST = Digest.parse("sha256:" + hashlib.sha256(CONTENT).hexdigest())
STAGING = "uploads/fetch-leader"


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = Database(root / "metadata.db")
        self.driver = FilesystemDriver(root)
        self.blobs = LocalBlobStore(self.db, self.driver)
        self.locks = LockDir(root / "locks")
        self.guards: dict[str, BinaryIO] = {}

    def begin(self, leader: LockFile, staging: str = STAGING) -> None:
        """What a leader does once the upstream answered: create, guard, record."""
        self.driver.open_append(staging).close()
        guard = self.blobs.open_staged(staging)
        hold_staging(guard)
        self.guards[staging] = guard
        leader.write_state(started_state(staging, len(CONTENT)))

    def append(self, data: bytes, staging: str = STAGING) -> None:
        writer = self.driver.open_append(staging)
        writer.write(data)
        writer.close()

    def end(self, staging: str = STAGING) -> None:
        self.guards.pop(staging).close()

    def die(self, leader: LockFile) -> None:
        """SIGKILL: the kernel drops every lock, the files stay."""
        for guard in self.guards.values():
            guard.close()
        self.guards.clear()
        leader.close(remove=False)

    def close(self) -> None:
        for guard in self.guards.values():
            guard.close()
        self.db.close()


@asynccontextmanager
async def following(
    tmp_path: Path,
) -> AsyncIterator[tuple[Store, LockFile, Download, asyncio.Task[Outcome | LockFile]]]:
    """(store, the leader's lock, the follower's download, the follower's task)."""
    store = Store(tmp_path)
    leader = store.locks.open(blob_lock_name(DIGEST))
    assert leader.held
    watched = store.locks.open(blob_lock_name(DIGEST))
    assert not watched.held
    download = Download(DIGEST, "uploads/fetch-follower-placeholder")
    follower = Follower(watched, download, store.blobs, "cache/app", interval=0.005)
    task = asyncio.create_task(follower.run())
    try:
        yield store, leader, download, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        watched.close()
        leader.close()
        store.close()


async def until(predicate: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the follower did not get there in time")


async def settle(awaitable: Awaitable[object], seconds: float = 0.05) -> None:
    """Give the follower a few polls; `awaitable` must not finish meanwhile."""
    future = asyncio.ensure_future(awaitable)
    done, _pending = await asyncio.wait([future], timeout=seconds)
    future.cancel()
    assert not done


def test_bytes_are_followed_as_they_arrive_and_done_waits_for_the_commit(tmp_path: Path) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            await settle(download.started.wait())
            store.begin(leader)
            store.append(CONTENT[:100_000])
            await until(lambda: download.written == 100_000)
            assert download.started.is_set()
            assert (download.staging_key, download.size) == (STAGING, len(CONTENT))
            store.append(CONTENT[100_000:])
            await until(lambda: download.written == len(CONTENT))
            # Every byte is on disk, but nothing says they match the digest yet.
            await settle(download.wait_finished())
            assert not download.done
            await store.blobs.commit_staged("docker.io/app", STAGING, DIGEST, len(CONTENT))
            store.end()
            leader.close()
            assert await asyncio.wait_for(task, 5) is Outcome.ENDED
            assert download.done and download.error is None
            assert download.written == download.size == len(CONTENT)
            # Visible in the follower's repository as well as the leader's.
            assert (await store.blobs.stat("cache/app", DIGEST)).size == len(CONTENT)
            assert (await store.blobs.stat("docker.io/app", DIGEST)).size == len(CONTENT)
            with store.blobs.open_committed(DIGEST) as f:
                assert f.read() == CONTENT

    asyncio.run(main())


def test_a_leader_that_finished_before_we_looked_is_found_committed(tmp_path: Path) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            store.begin(leader)
            store.append(CONTENT)
            await store.blobs.commit_staged("docker.io/app", STAGING, DIGEST, len(CONTENT))
            store.end()
            leader.close()
            assert await asyncio.wait_for(task, 5) is Outcome.ENDED
            assert download.done and download.size == len(CONTENT)

    asyncio.run(main())


def test_the_error_a_leader_recorded_fails_the_followers_and_nothing_is_cached(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            store.begin(leader)
            store.append(CONTENT[:1000])
            await until(lambda: download.written == 1000)
            store.driver.delete(STAGING)
            store.end()
            leader.write_state(
                failed_state(STAGING, UpstreamBadResponseError("content does not match"))
            )
            leader.close()
            assert await asyncio.wait_for(task, 5) is Outcome.ENDED
            assert isinstance(download.error, UpstreamBadResponseError)
            assert download.error.message == "content does not match"
            assert not download.done
            assert store.blobs.exists_anywhere(DIGEST) is None

    asyncio.run(main())


def test_an_error_before_the_upstream_answered_is_passed_on(tmp_path: Path) -> None:
    async def main() -> None:
        async with following(tmp_path) as (_store, leader, download, task):
            error = BlobUnknownError("blob unknown to upstream hub", detail={"digest": "d"})
            leader.write_state(failed_state(None, error))
            leader.close()
            assert await asyncio.wait_for(task, 5) is Outcome.ENDED
            assert isinstance(download.error, BlobUnknownError)
            assert download.error.status == 404
            assert download.error.detail == {"digest": "d"}
            assert not download.started.is_set()

    asyncio.run(main())


def test_a_leader_that_dies_mid_download_interrupts_followers_that_showed_bytes(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            store.begin(leader)
            store.append(CONTENT[:5000])
            await until(lambda: download.written == 5000)
            store.die(leader)
            with pytest.raises(UpstreamUnavailableError, match="interrupted"):
                await asyncio.wait_for(task, 5)
            assert not download.done
            # The dead leader's record stays for the next leader, which discards its file.
            lock_file = tmp_path / "locks" / f"{blob_lock_name(DIGEST)}.lock"
            assert lock_file.exists()
            assert STAGING in lock_file.read_text()
            assert store.blobs.exists_anywhere(DIGEST) is None

    asyncio.run(main())


def test_a_leader_that_dies_before_anything_was_shown_is_replaced_by_the_follower(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            await settle(download.started.wait())
            store.die(leader)
            outcome = await asyncio.wait_for(task, 5)
            assert isinstance(outcome, LockFile) and outcome.held
            assert not download.started.is_set() and download.error is None

    asyncio.run(main())


def test_a_leader_that_lets_go_without_a_result_means_start_over(tmp_path: Path) -> None:
    async def main() -> None:
        async with following(tmp_path) as (_store, leader, download, task):
            await settle(download.started.wait())
            leader.close()  # e.g. its process shut down and cancelled the download
            assert await asyncio.wait_for(task, 5) is Outcome.RETRY
            assert download.error is None and not download.done

    asyncio.run(main())


def test_followers_of_a_dead_leader_do_not_mistake_the_next_leaders_file_for_theirs(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            store.begin(leader)
            store.append(CONTENT[:5000])
            await until(lambda: download.written == 5000)
            # The leader dies and another process takes over before the follower looks.
            store.die(leader)
            successor = store.locks.open(blob_lock_name(DIGEST))
            assert successor.held
            store.begin(successor, "uploads/fetch-successor")
            try:
                with pytest.raises(UpstreamUnavailableError, match="interrupted"):
                    await asyncio.wait_for(task, 5)
            finally:
                successor.close()

    asyncio.run(main())


def test_recorded_errors_keep_their_class_status_and_headers() -> None:
    error = TooManyRequestsError("slow down", headers={"Retry-After": "7"})
    back = recorded_error(failed_state("uploads/fetch-x", error))
    assert isinstance(back, TooManyRequestsError)
    assert (back.status, back.message, back.headers) == (429, "slow down", {"Retry-After": "7"})
    odd = recorded_error({"error": {"code": "WHATEVER", "status": 418, "message": "odd"}})
    assert isinstance(odd, UpstreamBadResponseError) and odd.message == "odd"
    assert recorded_error({"staging": "uploads/fetch-x"}) is None
    assert recorded_error(None) is None


def test_the_record_of_a_dead_leader_is_not_followed_while_its_successor_starts(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with following(tmp_path) as (store, leader, download, task):
            # Before the follower's first look: the leader dies with part of the blob
            # written and a successor takes the lock; its own record is not written yet.
            store.begin(leader)
            store.append(CONTENT[:5000])
            store.die(leader)
            successor = store.locks.open(blob_lock_name(DIGEST))
            assert successor.held
            try:
                # The stale record names a file nobody writes: not followed.
                await settle(download.started.wait(), 0.1)
                successor.write_state({})
                store.driver.delete(STAGING)
                store.begin(successor, "uploads/fetch-successor")
                store.append(CONTENT, "uploads/fetch-successor")
                await until(lambda: download.written == len(CONTENT))
                assert download.staging_key == "uploads/fetch-successor"
                await store.blobs.commit_staged(
                    "docker.io/app", "uploads/fetch-successor", DIGEST, len(CONTENT)
                )
                store.end("uploads/fetch-successor")
            finally:
                successor.close()
            assert await asyncio.wait_for(task, 5) is Outcome.ENDED
            assert download.done and download.written == len(CONTENT)

    asyncio.run(main())
