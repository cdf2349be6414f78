"""Following a blob download that another process leads (`serve --workers`).

The leader holds the blob's lock file (`dockyard.proxy.locks`) and records there, once the
upstream answered, which staging file the bytes arrive in and how many to expect. A
follower tails that file (polling its size) and passes the growth on to its own clients as
an in-process download would. The end is the lock being let go: the blob committed
(verified by the leader) is success; an error the leader recorded fails every client, as
it does the leader's own; a leader that let go with neither, or died, is "interrupted".

The leader also holds a lock on its staging file while it writes it. A record left by a
leader that died names a file nobody holds: a follower never attaches to it, even in the
moment before the next leader replaces the record.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import os
from typing import Any, BinaryIO

from dockyard.errors import (
    BlobUnknownError,
    RegistryError,
    StorageFullError,
    TooManyRequestsError,
    UpstreamBadResponseError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from dockyard.proxy.download import Download
from dockyard.proxy.locks import LockFile, Poll
from dockyard.registry.blobs import LocalBlobStore

POLL_INTERVAL = 0.015

# The errors a download can end with, as a leader records them for its followers.
_KNOWN_ERRORS: dict[tuple[str, int], type[RegistryError]] = {
    (cls.code, cls.status): cls
    for cls in (
        BlobUnknownError,
        StorageFullError,
        TooManyRequestsError,
        UpstreamBadResponseError,
        UpstreamTimeoutError,
        UpstreamUnavailableError,
    )
}


def hold_staging(staging: BinaryIO) -> None:
    """The leader: mark its staging file as being written (until `staging` is closed)."""
    fcntl.flock(staging.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _writer_alive(staging: BinaryIO) -> bool:
    try:
        fcntl.flock(staging.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    fcntl.flock(staging.fileno(), fcntl.LOCK_UN)
    return False


def started_state(staging_key: str, size: int | None) -> dict[str, Any]:
    """What a leader records once the upstream answered."""
    return {"staging": staging_key, "size": size, "pid": os.getpid()}


def failed_state(staging_key: str | None, error: RegistryError) -> dict[str, Any]:
    """What a leader records when its download failed."""
    return {
        "staging": staging_key,
        "error": {
            "code": error.code,
            "status": error.status,
            "message": error.message,
            "detail": error.detail,
            "headers": error.headers,
        },
    }


def recorded_error(state: dict[str, Any] | None) -> RegistryError | None:
    """The error a leader recorded, as the same class when it is one of ours."""
    record = (state or {}).get("error")
    if not isinstance(record, dict):
        return None
    message = str(record.get("message") or "")
    cls = _KNOWN_ERRORS.get((str(record.get("code")), int(record.get("status") or 0)))
    headers = record.get("headers")
    headers = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    if cls is None:
        return UpstreamBadResponseError(message or None)
    return cls(message or None, record.get("detail"), headers=headers)


async def adopt_committed(blobs: LocalBlobStore, repository: str, download: Download) -> bool:
    """If some process has committed the blob: make it visible in `repository` and mark the
    download done. False when it is not stored (yet)."""
    size = blobs.exists_anywhere(download.digest)
    if size is None:
        return False
    try:
        await blobs.stat(repository, download.digest)
    except BlobUnknownError:
        await blobs.link(repository, download.digest)
    download.size = download.written = size
    download.done = True
    return True


def interrupted(download: Download) -> RegistryError:
    return UpstreamUnavailableError(
        f"the download of {download.digest} by another worker was interrupted; try again"
    )


class Outcome(enum.Enum):
    ENDED = "ended"  # the download is done, or failed (download.error)
    RETRY = "retry"  # the leader let go without a result before any byte was shown: again


class Follower:
    """Tails the staging file another process is downloading a blob into."""

    def __init__(
        self,
        lock: LockFile,
        download: Download,
        blobs: LocalBlobStore,
        repository: str,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._lock = lock
        self._download = download
        self._blobs = blobs
        self._repository = repository
        self._interval = interval
        self._staged: BinaryIO | None = None

    async def run(self) -> Outcome | LockFile:
        """Follow until the leader lets go; the result lands in `download` (done, or
        error). Returns the lock, held now, when the leader died before this process showed
        any byte of its download: the caller leads instead. Raises "interrupted" when the
        leader was lost after bytes were shown: clients cannot switch files midway."""
        try:
            while True:
                status = self._lock.poll()
                state = self._lock.state()
                if self._staged is None:
                    self._attach(state)
                elif state is not None and state.get("staging") != self._download.staging_key:
                    # A new leader took over from a dead one: our file is not its file.
                    return self._lost()
                await self._grew()
                if status is Poll.RUNNING:
                    await asyncio.sleep(self._interval)
                    continue
                return await self._ended(state)
        finally:
            if self._staged is not None:
                self._staged.close()

    def _attach(self, state: dict[str, Any] | None) -> None:
        download = self._download
        staging = (state or {}).get("staging")
        if download.started.is_set() or not isinstance(staging, str) or "error" in (state or {}):
            return
        try:
            staged = self._blobs.open_staged(staging)
        except FileNotFoundError:
            return  # committed (renamed) or discarded already: the end is near
        if not _writer_alive(staged):
            # A dead leader's file (or one complete already): wait for what comes next.
            staged.close()
            return
        self._staged = staged
        size = (state or {}).get("size")
        download.staging_key = staging
        download.size = size if isinstance(size, int) else None
        download.started.set()

    async def _grew(self) -> None:
        if self._staged is None:
            return
        download = self._download
        on_disk = os.fstat(self._staged.fileno()).st_size
        if download.size is not None:
            on_disk = min(on_disk, download.size)
        if on_disk > download.written:
            download.written = on_disk
            await download.notify()

    async def _ended(self, state: dict[str, Any] | None) -> Outcome | LockFile:
        download = self._download
        if await adopt_committed(self._blobs, self._repository, download):
            self._let_go()
            return Outcome.ENDED
        error = recorded_error(state)
        if error is not None:
            download.error = error
            self._let_go()
            return Outcome.ENDED
        return self._lost()

    def _lost(self) -> Outcome | LockFile:
        """The leader let go without a result, or died."""
        if not self._download.started.is_set():
            # Nothing shown yet: lead in its place, or start over.
            return self._lock if self._lock.held else Outcome.RETRY
        if self._lock.held:
            # Leave the dead leader's record: the next leader discards its staging file.
            self._lock.close(remove=False)
        raise interrupted(self._download)

    def _let_go(self) -> None:
        if self._lock.held:
            self._lock.close()
