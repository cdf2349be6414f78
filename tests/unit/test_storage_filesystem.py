"""Unit tests for dockyard.storage.filesystem: keys, staging, atomic commit, list, delete."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import StorageFullError
from dockyard.storage import BlobDriver, FilesystemDriver, StoredObject, filesystem
from dockyard.storage.filesystem import FileAppendWriter

BLOB_KEY = "blobs/sha256/ab/abcdef0123"
STAGING_KEY = "uploads/session-1"


@pytest.fixture
def driver(tmp_path: Path) -> FilesystemDriver:
    return FilesystemDriver(tmp_path / "store")


def stage(driver: FilesystemDriver, key: str, *chunks: bytes) -> None:
    writer = driver.open_append(key)
    try:
        for chunk in chunks:
            writer.write(chunk)
    finally:
        writer.close()


def publish(driver: FilesystemDriver, staging_key: str, key: str) -> None:
    """What the registry does: flush the staging object, then move it into place."""
    driver.sync(staging_key)
    driver.commit(staging_key, key)


def read(driver: FilesystemDriver, key: str) -> bytes:
    with driver.open_read(key) as f:
        return f.read()


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# -- construction ---------------------------------------------------------------------


def test_root_is_created_and_resolved(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "a" / ".." / "b" / "c")
    assert driver.root == (tmp_path / "b" / "c").resolve()
    assert driver.root.is_dir()


def test_existing_root_is_kept(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    driver = FilesystemDriver(tmp_path)
    assert driver.root == tmp_path.resolve()
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_satisfies_the_driver_protocol(driver: FilesystemDriver) -> None:
    protocol: BlobDriver = driver
    assert protocol.writable()


# -- key validation -------------------------------------------------------------------

INVALID_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("/abs", id="absolute"),
    pytest.param("/etc/passwd", id="absolute-deep"),
    pytest.param("../x", id="parent"),
    pytest.param("..", id="dot-dot"),
    pytest.param("a/../b", id="inner-parent"),
    pytest.param("a/../../b", id="escape-via-inner-parent"),
    pytest.param("a/..", id="trailing-parent"),
    pytest.param(".", id="dot"),
    pytest.param("./a", id="leading-dot"),
    pytest.param("a/./b", id="inner-dot"),
    pytest.param("a//b", id="empty-component"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("a\0b", id="nul"),
]

OPERATIONS: list[tuple[str, Callable[[FilesystemDriver, str], Any]]] = [
    ("stat", lambda d, k: d.stat(k)),
    ("open_read", lambda d, k: d.open_read(k)),
    ("open_append", lambda d, k: d.open_append(k)),
    ("read_staged", lambda d, k: list(d.read_staged(k, 10))),
    ("truncate_staged", lambda d, k: d.truncate_staged(k, 0)),
    ("staged_size", lambda d, k: d.staged_size(k)),
    ("sync", lambda d, k: d.sync(k)),
    ("commit-source", lambda d, k: d.commit(k, BLOB_KEY)),
    ("commit-target", lambda d, k: d.commit(STAGING_KEY, k)),
    ("delete", lambda d, k: d.delete(k)),
    ("list", lambda d, k: list(d.list(k))),
]


@pytest.mark.parametrize("key", INVALID_KEYS)
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_invalid_keys_raise_value_error(
    driver: FilesystemDriver,
    tmp_path: Path,
    key: str,
    name: str,
    operation: Callable[[FilesystemDriver, str], Any],
) -> None:
    stage(driver, STAGING_KEY, b"staged")
    before = files_under(tmp_path)
    with pytest.raises(ValueError):
        operation(driver, key)
    # Nothing was created, moved or removed anywhere, inside the store or next to it.
    assert files_under(tmp_path) == before


def test_parent_key_cannot_reach_outside_the_root(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not touch")
    driver = FilesystemDriver(tmp_path / "store")
    for key in ["../secret", "blobs/../../secret"]:
        with pytest.raises(ValueError):
            driver.open_read(key)
        with pytest.raises(ValueError):
            driver.delete(key)
    assert secret.read_bytes() == b"do not touch"


@pytest.mark.parametrize(
    "key", ["a", "a/b", "blobs/sha256/ab/abcdef", "uploads/0b1c-uuid", "a..b/c.d", "...x"]
)
def test_ordinary_keys_map_under_the_root(driver: FilesystemDriver, key: str) -> None:
    stage(driver, key, b"ok")
    assert (driver.root / key).read_bytes() == b"ok"
    assert driver.staged_size(key) == 2


# -- staging --------------------------------------------------------------------------


def test_append_writes_in_order(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    assert writer.size == 0
    writer.write(b"hello ")
    writer.write(bytearray(b"big "))
    writer.write(memoryview(b"xxworld")[2:])
    assert writer.size == len(b"hello big world")
    writer.close()
    assert driver.staged_size(STAGING_KEY) == len(b"hello big world")
    assert b"".join(driver.read_staged(STAGING_KEY, 4)) == b"hello big world"


def test_append_resumes_an_existing_staging_object(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"first-")
    writer = driver.open_append(STAGING_KEY)
    assert writer.size == 6
    writer.write(b"second")
    assert writer.size == 12
    writer.close()
    assert b"".join(driver.read_staged(STAGING_KEY, 1024)) == b"first-second"


def test_empty_writes(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    writer.write(b"")
    assert writer.size == 0
    writer.close()
    assert driver.staged_size(STAGING_KEY) == 0
    assert list(driver.read_staged(STAGING_KEY, 8)) == []


def test_partial_os_writes_are_retried(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls: list[int] = []

    def one_byte_at_a_time(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:1]))

    writer = driver.open_append(STAGING_KEY)
    monkeypatch.setattr(os, "write", one_byte_at_a_time)
    writer.write(b"abcde")
    monkeypatch.undo()
    writer.close()
    assert calls == [5, 4, 3, 2, 1]
    assert writer.size == 5
    assert b"".join(driver.read_staged(STAGING_KEY, 100)) == b"abcde"


def test_write_all_appends_buffers_in_order_through_partial_writes(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, STAGING_KEY, b"start-")
    real_writev = os.writev
    calls: list[int] = []

    def three_bytes_at_a_time(fd: int, buffers: Any) -> int:
        data = b"".join(bytes(b) for b in buffers)
        calls.append(len(data))
        return real_writev(fd, [data[:3]])

    writer = driver.open_append(STAGING_KEY)
    monkeypatch.setattr(os, "writev", three_bytes_at_a_time)
    writer.write_all([b"ab", b"", bytearray(b"cdefg"), memoryview(b"hij")])
    monkeypatch.undo()
    writer.write_all([])
    writer.close()
    assert calls == [10, 7, 4, 1]  # each call resumes inside the buffer it stopped in
    assert writer.size == 16
    assert b"".join(driver.read_staged(STAGING_KEY, 100)) == b"start-abcdefghij"


def test_write_all_of_many_buffers(driver: FilesystemDriver) -> None:
    buffers = [bytes([i % 256]) * (i % 7) for i in range(3000)]  # more than one writev takes
    writer = driver.open_append(STAGING_KEY)
    writer.write_all(buffers)
    writer.close()
    assert b"".join(driver.read_staged(STAGING_KEY, 1 << 20)) == b"".join(buffers)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_write_all_errors(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    writer = driver.open_append(STAGING_KEY)

    def failing(fd: int, buffers: Any) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "writev", failing)
    with pytest.raises((OSError, StorageFullError)) as info:
        writer.write_all([b"data"])
    monkeypatch.undo()
    writer.close()
    if code == errno.EIO:  # not a full device: the error as it came
        assert isinstance(info.value, OSError) and info.value.errno == errno.EIO
    else:
        assert isinstance(info.value, StorageFullError) and info.value.status == 507
        assert isinstance(info.value.__cause__, OSError)


# -- write-behind -------------------------------------------------------------------

W = filesystem.WINDOW


def _record_sync_calls(writer: FileAppendWriter, calls: list[tuple[int, int, int]]) -> None:
    real = filesystem._sync_file_range()
    assert real is not None, "sync_file_range is in every Linux C library"

    def sync(fd: int, offset: int, count: int, flags: int) -> int:
        calls.append((offset, count, flags))
        return real(fd, offset, count, flags)

    writer._sync = sync


def test_write_behind_starts_each_window_and_drops_those_lag_windows_back(
    driver: FilesystemDriver,
) -> None:
    calls: list[tuple[int, int, int]] = []
    writer = driver.open_append(STAGING_KEY)
    _record_sync_calls(writer, calls)
    data = os.urandom(W * 7 + 12345)
    for start in range(0, len(data), 3 << 20):  # batches that straddle window edges
        writer.write(data[start : start + (3 << 20)])
    writer.close()
    started = [offset for offset, count, flags in calls if flags == filesystem._SYNC_WRITE]
    waited = [offset for offset, count, flags in calls if flags != filesystem._SYNC_WRITE]
    assert started == [i * W for i in range(7)]
    assert waited == [i * W for i in range(7 - filesystem.DROP_LAG)]
    assert all(count == W for _, count, _ in calls)
    assert b"".join(driver.read_staged(STAGING_KEY, 1 << 20)) == data


def test_write_behind_carries_on_across_writers_of_one_staging_file(
    driver: FilesystemDriver,
) -> None:
    # Chunked uploads open the staging file once per PATCH.
    data = os.urandom(W * 3 + 100)
    stage(driver, STAGING_KEY, data[: W + 50])
    calls: list[tuple[int, int, int]] = []
    writer = driver.open_append(STAGING_KEY)
    _record_sync_calls(writer, calls)
    writer.write(data[W + 50 :])
    writer.close()
    assert [c[0] for c in calls if c[2] == filesystem._SYNC_WRITE] == [W, 2 * W]
    assert b"".join(driver.read_staged(STAGING_KEY, 1 << 20)) == data


def test_keep_cached_writer_starts_writeback_but_drops_nothing(
    driver: FilesystemDriver,
) -> None:
    calls: list[tuple[int, int, int]] = []
    writer = driver.open_append(STAGING_KEY, keep_cached=True)
    _record_sync_calls(writer, calls)
    writer.write(os.urandom(W * (filesystem.DROP_LAG + 3)))
    writer.close()
    assert {flags for _, _, flags in calls} == {filesystem._SYNC_WRITE}
    assert len(calls) == filesystem.DROP_LAG + 3


def test_without_sync_file_range_writes_plainly(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    writer._sync = None
    data = os.urandom(W * 2 + 1)
    writer.write(data)
    writer.close()
    assert b"".join(driver.read_staged(STAGING_KEY, 1 << 20)) == data


def _resident_bytes(path: Path) -> int:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


def _fs_type(path: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a disk-backed filesystem: tmp_path, or (when the temporary directory
    is tmpfs, whose pages are the storage itself) one beside the tests."""
    if _fs_type(tmp_path) != "tmpfs":
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent, prefix=".page-cache-") as d:
        assert _fs_type(Path(d)) != "tmpfs", "no disk-backed directory to write to"
        yield Path(d)


@pytest.mark.parametrize("keep_cached", [False, True])
def test_a_large_staging_file_leaves_only_a_few_windows_in_the_page_cache(
    disk_dir: Path, keep_cached: bool
) -> None:
    driver = FilesystemDriver(disk_dir / "store")
    size = W * 12
    writer = driver.open_append(STAGING_KEY, keep_cached=keep_cached)
    block = os.urandom(1 << 20)
    for _ in range(size // len(block)):
        writer.write(block)
    writer.close()
    resident = _resident_bytes(driver.root / STAGING_KEY)
    if keep_cached:
        assert resident > size // 2
    else:
        assert resident <= (filesystem.DROP_LAG + 1) * W


def test_close_is_idempotent(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    writer.close()
    writer.close()


def test_read_staged_chunks(driver: FilesystemDriver) -> None:
    data = bytes(range(256)) * 4
    stage(driver, STAGING_KEY, data)
    chunks = list(driver.read_staged(STAGING_KEY, 300))
    assert [len(c) for c in chunks] == [300, 300, 300, 124]
    assert b"".join(chunks) == data


def test_read_staged_missing(driver: FilesystemDriver) -> None:
    with pytest.raises(FileNotFoundError):
        list(driver.read_staged(STAGING_KEY, 10))


def test_truncate_staged(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"0123456789")
    driver.truncate_staged(STAGING_KEY, 4)
    assert driver.staged_size(STAGING_KEY) == 4
    writer = driver.open_append(STAGING_KEY)
    assert writer.size == 4
    writer.write(b"xy")
    writer.close()
    assert b"".join(driver.read_staged(STAGING_KEY, 100)) == b"0123xy"


def test_staged_size_absent(driver: FilesystemDriver) -> None:
    assert driver.staged_size(STAGING_KEY) is None


# -- commit ---------------------------------------------------------------------------


def test_staged_content_is_invisible_until_commit(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    writer.write(b"partial")
    assert driver.stat(BLOB_KEY) is None
    writer.write(b" and the rest")
    writer.close()
    assert driver.stat(BLOB_KEY) is None
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert read(driver, BLOB_KEY) == b"partial and the rest"


def test_commit_moves_the_staging_object(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"content")
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert driver.staged_size(STAGING_KEY) is None
    stored = driver.stat(BLOB_KEY)
    assert stored is not None
    assert stored.key == BLOB_KEY
    assert stored.size == 7
    assert read(driver, BLOB_KEY) == b"content"
    # Parent directories of the final key were created.
    assert (driver.root / "blobs" / "sha256" / "ab").is_dir()


def test_commit_replaces_an_existing_object(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"old")
    publish(driver, STAGING_KEY, BLOB_KEY)
    stage(driver, STAGING_KEY, b"new content")
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert read(driver, BLOB_KEY) == b"new content"


def test_commit_without_staging_object_changes_nothing(driver: FilesystemDriver) -> None:
    stage(driver, "uploads/other", b"committed")
    publish(driver, "uploads/other", BLOB_KEY)
    with pytest.raises(FileNotFoundError):
        driver.commit(STAGING_KEY, BLOB_KEY)
    assert read(driver, BLOB_KEY) == b"committed"


def _record_durability_calls(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str]]:
    """Record fsync and rename calls, by key relative to the store root."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", Path(path).relative_to(driver.root).as_posix()))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", Path(dst).relative_to(driver.root).as_posix()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_sync_flushes_the_staging_file_only(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, STAGING_KEY, b"durable")
    events = _record_durability_calls(driver, monkeypatch)
    driver.sync(STAGING_KEY)
    assert events == [("fsync", STAGING_KEY)]
    assert driver.stat(BLOB_KEY) is None
    assert driver.staged_size(STAGING_KEY) == len(b"durable")


def test_commit_renames_then_syncs_the_directory(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, STAGING_KEY, b"durable")
    driver.sync(STAGING_KEY)
    events = _record_durability_calls(driver, monkeypatch)
    driver.commit(STAGING_KEY, BLOB_KEY)
    assert events == [("replace", BLOB_KEY), ("fsync", "blobs/sha256/ab")]


def test_sync_then_commit_is_file_sync_rename_directory_sync(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, STAGING_KEY, b"durable")
    events = _record_durability_calls(driver, monkeypatch)
    driver.sync(STAGING_KEY)
    driver.commit(STAGING_KEY, BLOB_KEY)
    assert events == [
        ("fsync", STAGING_KEY),
        ("replace", BLOB_KEY),
        ("fsync", "blobs/sha256/ab"),
    ]


def test_sync_missing_staging_object(driver: FilesystemDriver) -> None:
    with pytest.raises(FileNotFoundError):
        driver.sync(STAGING_KEY)


def test_failed_rename_leaves_target_untouched_and_staging_intact(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, "uploads/first", b"original")
    publish(driver, "uploads/first", BLOB_KEY)
    stage(driver, STAGING_KEY, b"replacement")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError) as info:
        driver.commit(STAGING_KEY, BLOB_KEY)
    assert not isinstance(info.value, StorageFullError)
    monkeypatch.undo()
    # Either the whole old object or the whole new one: here, nothing changed.
    assert read(driver, BLOB_KEY) == b"original"
    assert b"".join(driver.read_staged(STAGING_KEY, 100)) == b"replacement"


def test_failed_sync_raises_and_publishes_nothing(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(driver, STAGING_KEY, b"not durable")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError) as info:
        driver.sync(STAGING_KEY)
    monkeypatch.undo()
    assert not isinstance(info.value, StorageFullError)
    assert driver.stat(BLOB_KEY) is None
    assert driver.staged_size(STAGING_KEY) == len(b"not durable")


# -- a full device --------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_device_on_write(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    writer = driver.open_append(STAGING_KEY)

    def full(fd: int, data: Any) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageFullError) as info:
        writer.write(b"data")
    monkeypatch.undo()
    writer.close()
    assert info.value.status == 507
    assert isinstance(info.value.__cause__, OSError)


def test_other_write_errors_propagate(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = driver.open_append(STAGING_KEY)

    def broken(fd: int, data: Any) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(OSError) as info:
        writer.write(b"data")
    monkeypatch.undo()
    writer.close()
    assert not isinstance(info.value, StorageFullError)
    assert info.value.errno == errno.EIO


def test_full_device_on_open_append(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StorageFullError):
        driver.open_append(STAGING_KEY)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_device_on_sync(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    stage(driver, STAGING_KEY, b"data")

    def full(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageFullError):
        driver.sync(STAGING_KEY)


def test_full_device_on_commit(driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    stage(driver, STAGING_KEY, b"data")

    def full(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageFullError):
        driver.commit(STAGING_KEY, BLOB_KEY)


# -- stat, read, delete ---------------------------------------------------------------


def test_stat(driver: FilesystemDriver) -> None:
    assert driver.stat(BLOB_KEY) is None
    stage(driver, STAGING_KEY, b"12345")
    publish(driver, STAGING_KEY, BLOB_KEY)
    stored = driver.stat(BLOB_KEY)
    assert stored is not None
    assert (stored.key, stored.size) == (BLOB_KEY, 5)
    assert stored.modified == pytest.approx((driver.root / BLOB_KEY).stat().st_mtime)


def test_stat_of_a_directory_prefix_is_none(driver: FilesystemDriver) -> None:
    # "Size and mtime of a committed object, or None": a directory is not an object.
    stage(driver, STAGING_KEY, b"x")
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert driver.stat("blobs/sha256") is None
    assert driver.staged_size("uploads") is None


def test_open_read_missing(driver: FilesystemDriver) -> None:
    with pytest.raises(FileNotFoundError):
        driver.open_read(BLOB_KEY)


def test_open_read_is_binary_and_seekable(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"0123456789")
    publish(driver, STAGING_KEY, BLOB_KEY)
    with driver.open_read(BLOB_KEY) as f:
        f.seek(3)
        assert f.read(4) == b"3456"


def test_delete(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"x")
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert driver.delete(BLOB_KEY) is True
    assert driver.stat(BLOB_KEY) is None
    assert driver.delete(BLOB_KEY) is False


def test_delete_staging_object(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"partial")
    assert driver.delete(STAGING_KEY) is True
    assert driver.staged_size(STAGING_KEY) is None


def test_delete_absent_in_missing_directory(driver: FilesystemDriver) -> None:
    assert driver.delete("no/such/dir/key") is False


# -- list -----------------------------------------------------------------------------


def test_list(driver: FilesystemDriver) -> None:
    contents = {
        "blobs/sha256/ab/ab01": b"1",
        "blobs/sha256/ab/ab02": b"22",
        "blobs/sha256/cd/cd03": b"333",
        "blobs/sha512/ef/ef04": b"4444",
    }
    for i, (key, data) in enumerate(contents.items()):
        stage(driver, f"uploads/s{i}", data)
        publish(driver, f"uploads/s{i}", key)
    stage(driver, "uploads/pending", b"55555")

    listed = {obj.key: obj for obj in driver.list("blobs")}
    assert {k: o.size for k, o in listed.items()} == {k: len(v) for k, v in contents.items()}
    assert all(isinstance(o, StoredObject) and o.modified > 0 for o in listed.values())

    assert sorted(o.key for o in driver.list("blobs/sha256")) == [
        "blobs/sha256/ab/ab01",
        "blobs/sha256/ab/ab02",
        "blobs/sha256/cd/cd03",
    ]
    assert sorted(o.key for o in driver.list("blobs/sha256/cd")) == ["blobs/sha256/cd/cd03"]
    assert [o.key for o in driver.list("uploads")] == ["uploads/pending"]


def test_list_keys_round_trip(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"data")
    publish(driver, STAGING_KEY, BLOB_KEY)
    for obj in driver.list("blobs"):
        assert driver.stat(obj.key) == obj
        assert read(driver, obj.key) == b"data"


def test_list_absent_prefix(driver: FilesystemDriver) -> None:
    assert list(driver.list("nothing/here")) == []


def test_list_prefix_that_is_an_object(driver: FilesystemDriver) -> None:
    stage(driver, STAGING_KEY, b"x")
    publish(driver, STAGING_KEY, BLOB_KEY)
    assert list(driver.list(BLOB_KEY)) == []


def test_list_is_lazy_and_tolerates_concurrent_deletes(driver: FilesystemDriver) -> None:
    for i in range(5):
        stage(driver, f"uploads/s{i}", b"x")
        publish(driver, f"uploads/s{i}", f"blobs/k/{i}")
    listing: Iterator[StoredObject] = driver.list("blobs")
    first = next(listing)
    for i in range(5):
        driver.delete(f"blobs/k/{i}")
    # Files removed while walking are skipped, not an error.
    rest = list(listing)
    assert first.key.startswith("blobs/k/")
    assert len(rest) <= 4


# -- writable -------------------------------------------------------------------------


def test_writable_leaves_no_probe_behind(driver: FilesystemDriver) -> None:
    assert driver.writable() is True
    assert list(driver.root.iterdir()) == []


def test_not_writable_when_files_cannot_be_created(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    assert driver.writable() is False


def test_not_writable_when_device_is_full(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert driver.writable() is False
    monkeypatch.undo()
    assert driver.writable() is True


def test_writer_type(driver: FilesystemDriver) -> None:
    writer = driver.open_append(STAGING_KEY)
    try:
        assert isinstance(writer, FileAppendWriter)
    finally:
        writer.close()
