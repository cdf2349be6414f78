"""The filesystem driver.

Layout under the root directory::

    blobs/sha256/ab/abcdef...      committed content, named by the registry layer's keys
    uploads/<session id>           staging files, on the same filesystem so commit is a rename

Commit is fsync(file), then rename and fsync(directory): after a crash a key holds either
nothing or the complete object.

Staging files are written behind: every finished window starts its writeback at once, so
the fsync at commit has little left to do, and (unless the writer keeps them cached) the
pages a few windows back are dropped once on disk. A 1 GiB upload then occupies a few tens
of MiB of page cache instead of pushing hot blobs out, and commits at the disk's speed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from dockyard.storage.driver import StorageFullError, StoredObject

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _raise_if_full(exc: OSError) -> None:
    if exc.errno in _FULL_ERRNOS:
        raise StorageFullError(
            "registry storage is full: no space left on the device holding the store"
        ) from exc


# Write-behind: writeback starts per window; windows DROP_LAG back are waited for, dropped.
WINDOW = 8 << 20
DROP_LAG = 4
_SYNC_WAIT_BEFORE, _SYNC_WRITE, _SYNC_WAIT_AFTER = 1, 2, 4
# Buffers one writev(2) takes at most.
_IOV_MAX = 1024


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(2), or None where the C library has none (not Linux)."""
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", func)


class FileAppendWriter:
    """A staging file opened for appending, written behind (see the module docstring).

    `keep_cached` keeps the written pages in the page cache, for a file that is read while
    it grows (a pull-through download that clients follow).
    """

    def __init__(self, path: Path, keep_cached: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._keep_cached = keep_cached
        self._sync = _sync_file_range()
        # Write-behind progress in bytes, on window boundaries: appending to a file that an
        # earlier writer wrote behind carries on from the window where that one stopped.
        self._started = self._size - self._size % WINDOW
        self._dropped = max(0, self._started - DROP_LAG * WINDOW)

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self._size += written
                view = view[written:]
        except OSError as exc:
            _raise_if_full(exc)
            raise
        if self._sync is not None:
            self._write_behind(self._sync)

    def write_all(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """One writev(2) for several buffers (the chunks of a request body as they came)."""
        views = [memoryview(b) for b in buffers]
        try:
            while views:
                written = os.writev(self._fd, views[:_IOV_MAX])
                self._size += written
                while views and written >= len(views[0]):
                    written -= len(views.pop(0))
                if written:
                    views[0] = views[0][written:]
        except OSError as exc:
            _raise_if_full(exc)
            raise
        if self._sync is not None:
            self._write_behind(self._sync)

    def _write_behind(self, sync: Callable[[int, int, int, int], int]) -> None:
        # Advisory: a failure here changes nothing; fsync at commit reports real errors.
        while self._size - self._started >= WINDOW:
            sync(self._fd, self._started, WINDOW, _SYNC_WRITE)
            self._started += WINDOW
            if self._keep_cached:
                continue
            while self._started - self._dropped > DROP_LAG * WINDOW:
                sync(
                    self._fd,
                    self._dropped,
                    WINDOW,
                    _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER,
                )
                with contextlib.suppress(OSError):
                    os.posix_fadvise(self._fd, self._dropped, WINDOW, os.POSIX_FADV_DONTNEED)
                self._dropped += WINDOW

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemDriver:
    """Objects as files under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys come from the registry layer, but never trust a path join blindly.
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\0" in key
            or any(p in ("", ".", "..") for p in parts)
        ):
            raise ValueError(f"invalid storage key: {key!r}")
        return self.root.joinpath(*parts)

    def stat(self, key: str) -> StoredObject | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return StoredObject(key, st.st_size, st.st_mtime)

    def open_read(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def open_append(self, key: str, keep_cached: bool = False) -> FileAppendWriter:
        try:
            return FileAppendWriter(self._path(key), keep_cached)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    def read_staged(self, key: str, chunk_size: int) -> Iterator[bytes]:
        with self._path(key).open("rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def truncate_staged(self, key: str, size: int) -> None:
        os.truncate(self._path(key), size)

    def staged_size(self, key: str) -> int | None:
        stored = self.stat(key)
        return None if stored is None else stored.size

    def sync(self, staging_key: str) -> None:
        try:
            fd = os.open(self._path(staging_key), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    def commit(self, staging_key: str, key: str) -> None:
        source = self._path(staging_key)
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return True

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                yield StoredObject(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def writable(self) -> bool:
        probe = self.root / ".write-probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
            probe.unlink()
        except OSError:
            return False
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
