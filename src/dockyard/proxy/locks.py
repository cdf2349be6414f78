"""Named locks shared by every process serving one store (`serve --workers`).

A lock is flock(2) on a file in one directory. The holder removes the file before it lets
go, so the directory only holds files for work in progress, and a process that waited on
the old file can tell "finished" (its file is gone from the directory) from "the holder
died" (the kernel dropped the lock but the file is still there: whoever takes it next finds
the dead holder's state in it). A crashed holder never wedges the others.

The holder may write a small state record into the file (one JSON line) for the processes
that follow its work, e.g. where its staging file is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

POLL_INTERVAL = 0.01


class Poll(enum.Enum):
    RUNNING = "running"  # another process holds the lock
    FINISHED = "finished"  # the holder let go (and removed the file)
    TAKEN = "taken"  # the holder died without letting go: this process holds the lock now


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


class LockFile:
    """One open lock file: held by this process, or watched while another one holds it."""

    def __init__(self, path: Path, fd: int, held: bool) -> None:
        self.path = path
        self._fd = fd
        self.held = held

    def _names_our_file(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        ours = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)

    def poll(self) -> Poll:
        """For a watched lock: is its holder still at work?"""
        if self.held:
            return Poll.TAKEN
        if not _try_flock(self._fd):
            return Poll.RUNNING
        if self._names_our_file():
            self.held = True
            return Poll.TAKEN
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        return Poll.FINISHED

    def state(self) -> dict[str, Any] | None:
        """The record the (last) holder wrote, or None: none yet, or half written."""
        data = os.pread(self._fd, 1 << 16, 0)
        line, newline, _rest = data.partition(b"\n")
        if not newline:
            return None
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the record (holder only)."""
        assert self.held
        data = json.dumps(state, separators=(",", ":")).encode() + b"\n"
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def close(self, remove: bool = True) -> None:
        """Let go. A holder removes the file first, so watchers see FINISHED; without
        `remove` it leaves the file and its record as a dead holder would."""
        if self._fd < 0:
            return
        if self.held and remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


class LockDir:
    """The lock files of one store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, name: str) -> LockFile:
        """The named lock: held if it was free, else watched."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid lock name: {name!r}")
        path = self.path / f"{name}.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                self.path.mkdir(parents=True, exist_ok=True)
                continue
            lock = LockFile(path, fd, held=False)
            if not _try_flock(fd):
                return lock
            if lock._names_our_file():
                lock.held = True
                return lock
            # The last holder removed this file between our open and our flock: again.
            os.close(fd)

    def sweep(self, max_age: float, now: float | None = None) -> list[str]:
        """Remove lock files left by holders that died (free, untouched for `max_age`
        seconds); returns their names. Live holders' files are never touched."""
        cutoff = (time.time() if now is None else now) - max_age
        removed: list[str] = []
        try:
            paths = sorted(self.path.glob("*.lock"))
        except OSError:
            return removed
        for path in paths:
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            lock = LockFile(path, fd, held=False)
            if _try_flock(fd) and lock._names_our_file():
                lock.held = True
                removed.append(path.name)
            lock.close()  # a holder removes the file as it lets go
        return removed

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, patience: float) -> AsyncIterator[bool]:
        """Hold the named lock for the block. Waits up to `patience` seconds for another
        process to let go, then goes on without it; yields whether it holds the lock."""
        lock = self.open(name)
        deadline = time.monotonic() + patience
        try:
            while not lock.held and time.monotonic() < deadline:
                await asyncio.sleep(POLL_INTERVAL)
                if lock.poll() is Poll.FINISHED:
                    lock.close()
                    lock = self.open(name)
            yield lock.held
        finally:
            lock.close()
