"""UploadManager's streaming: writes and hashing run side by side, and a failure on either
side never leaves a hash that disagrees with the bytes on disk."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    StorageFullError,
)
from dockyard.metadata import Database
from dockyard.oci.digest import Digest
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.paths import upload_key
from dockyard.registry.uploads import WRITE_BATCH, UploadManager
from dockyard.storage import FilesystemDriver
from dockyard.storage.filesystem import FileAppendWriter

REPO = "team/app"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[UploadManager, FilesystemDriver, LocalBlobStore]]:
    db = Database(tmp_path / "metadata.db")
    driver = FilesystemDriver(tmp_path / "store")
    blobs = LocalBlobStore(db, driver)
    try:
        yield UploadManager(db, driver, blobs), driver, blobs
    finally:
        db.close()


PIECE = 100_000


async def _body(data: bytes, piece: int = PIECE) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]
        await asyncio.sleep(0)


def _digest(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


async def _append_with(
    manager: UploadManager,
    monkeypatch: pytest.MonkeyPatch,
    write: Callable[[FileAppendWriter, Any], None],
    data: bytes,
    error: type[BaseException],
) -> str:
    """Open a session and append `data` while the staging writes go to `write`, which must
    make the append fail with `error`; returns the session's id."""
    status = await manager.start(REPO)
    monkeypatch.setattr(FileAppendWriter, "write_all", write)
    with pytest.raises(error):
        await manager.append(REPO, status.id, _body(data))
    monkeypatch.undo()
    return status.id


def test_a_big_monolithic_body_commits_with_its_digest(
    parts: tuple[UploadManager, FilesystemDriver, LocalBlobStore],
) -> None:
    manager, _, blobs = parts
    data = os.urandom(5 * WRITE_BATCH + 12345)  # more batches than may be in flight

    async def run() -> None:
        status = await manager.start(REPO)
        size = await manager.finish(REPO, status.id, _digest(data), _body(data))
        assert size == len(data)
        with blobs.open_committed(_digest(data)) as f:
            assert f.read() == data

    asyncio.run(run())


@pytest.mark.parametrize("reached_disk", [0, 2], ids=["nothing", "half"])
def test_a_failed_write_is_resumed_from_the_disk_with_a_true_hash(
    parts: tuple[UploadManager, FilesystemDriver, LocalBlobStore],
    monkeypatch: pytest.MonkeyPatch,
    reached_disk: int,
) -> None:
    manager, _, blobs = parts
    data = os.urandom(3 * WRITE_BATCH + 999)
    real_write = FileAppendWriter.write_all
    calls = 0

    def failing_second_write(self: FileAppendWriter, batch: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            # None or half of the batch reaches the disk, then the device fails; the hash,
            # running alongside, may already have taken the whole batch.
            if reached_disk:
                data = b"".join(batch)
                real_write(self, [data[: len(data) // reached_disk]])
            raise OSError(errno.EIO, "I/O error")
        real_write(self, batch)

    async def run() -> None:
        upload = await _append_with(manager, monkeypatch, failing_second_write, data, OSError)
        # The session reports what is on disk, and carries on from there.
        offset = (await manager.status(REPO, upload)).offset
        batch = -(-WRITE_BATCH // PIECE) * PIECE  # the first batch: whole pieces, >= 4 MiB
        assert offset == batch + (batch // reached_disk if reached_disk else 0)
        await manager.append(REPO, upload, _body(data[offset:]), start=offset)
        size = await manager.finish(REPO, upload, _digest(data))
        assert size == len(data)
        with blobs.open_committed(_digest(data)) as f:
            assert f.read() == data

    asyncio.run(run())


def test_a_client_that_stalls_keeps_what_arrived(
    parts: tuple[UploadManager, FilesystemDriver, LocalBlobStore],
) -> None:
    manager, _, _ = parts
    data = os.urandom(2 * WRITE_BATCH + 4321)

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in _body(data):
            yield chunk
        raise BlobUploadInvalidError("request body stalled")

    async def run() -> None:
        status = await manager.start(REPO)
        with pytest.raises(BlobUploadInvalidError):
            await manager.append(REPO, status.id, stalls())
        assert (await manager.status(REPO, status.id)).offset == len(data)
        # The hash covers exactly those bytes: the session completes with their digest.
        assert await manager.finish(REPO, status.id, _digest(data)) == len(data)

    asyncio.run(run())


def test_a_full_disk_discards_the_session(
    parts: tuple[UploadManager, FilesystemDriver, LocalBlobStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, driver, _ = parts
    data = os.urandom(3 * WRITE_BATCH)

    def full(self: FileAppendWriter, chunk: Any) -> None:
        raise StorageFullError("no space left on the device")

    async def run() -> None:
        upload = await _append_with(manager, monkeypatch, full, data, StorageFullError)
        assert list(driver.list("uploads")) == []
        with pytest.raises(BlobUploadUnknownError):
            await manager.status(REPO, upload)

    asyncio.run(run())


class _GatedHasher:
    """sha256 whose updates wait for a gate: a hash still catching up with the disk."""

    def __init__(self, gate: threading.Event) -> None:
        self._gate = gate
        self._hasher = hashlib.sha256()
        self.name = self._hasher.name

    def update(self, data: bytes) -> None:
        assert self._gate.wait(30)
        self._hasher.update(data)

    def copy(self) -> Any:
        return self._hasher.copy()

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def test_a_chunk_is_answered_while_its_hash_catches_up(
    parts: tuple[UploadManager, FilesystemDriver, LocalBlobStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, driver, blobs = parts
    first, last = os.urandom(2 * WRITE_BATCH + 7), os.urandom(WRITE_BATCH // 3)
    gate = threading.Event()
    monkeypatch.setattr(manager, "_rehash", lambda key, algorithm: _GatedHasher(gate))

    async def run() -> None:
        status = await manager.start(REPO)
        # The chunk's bytes are on disk, and its answer goes out, with the hash held back.
        appended = await manager.append(REPO, status.id, _body(first))
        assert appended.offset == len(first)
        assert driver.staged_size(upload_key(status.id)) == len(first)
        # The next chunk waits for that hash: it must extend it, not start beside it.
        finishing = asyncio.create_task(
            manager.finish(REPO, status.id, _digest(first + last), _body(last))
        )
        await asyncio.sleep(0.2)
        assert not finishing.done()
        gate.set()
        assert await finishing == len(first + last)
        with blobs.open_committed(_digest(first + last)) as f:
            assert f.read() == first + last

    asyncio.run(run())
