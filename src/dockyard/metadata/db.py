"""SQLite access from async code: one writer thread, reads on the event loop's connection.

WAL mode lets reads proceed while the writer commits. Writes run as whole transactions
(`BEGIN IMMEDIATE` ... `COMMIT`) on a single thread, so they are serialised and never
block the event loop on fsync. `synchronous=FULL` makes a committed transaction durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from dockyard.errors import StorageFullError
from dockyard.metadata.schema import migrate

T = TypeVar("T")
P = ParamSpec("P")


# Whether aiohttp queues each request handler's first step (see Database.generation).
_HANDLERS_QUEUED = sys.version_info < (3, 12)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread, or no loop
        return None


def _enable_wal(conn: sqlite3.Connection, attempts: int = 300) -> None:
    """Switch a new database to WAL. Processes opening it together (serve --workers) can get
    "database is locked" here without the busy handler being asked, so retry briefly."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")  # first: other processes may hold the lock
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Database:
    """The metadata database of one registry root."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer_conn = _connect(path)
        migrate(self._writer_conn)
        self._reader_conn = _connect(path)
        self._reader_conn.execute("PRAGMA query_only=ON")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dockyard-db")
        self._closed = False
        self._commits = 0
        self._version: int | None = None  # PRAGMA data_version, while kept (generation)
        self._version_loop: asyncio.AbstractEventLoop | None = None

    def snapshot(self) -> Database:
        """A private in-memory copy: dry runs apply the real algorithm to it."""
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._writer_conn.backup(memory)
        memory.execute("PRAGMA foreign_keys=ON")
        copy = Database.__new__(Database)
        copy.path = self.path
        copy._writer_conn = memory
        copy._reader_conn = memory
        copy._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dockyard-db-copy")
        copy._closed = False
        copy._commits = 0
        copy._version = copy._version_loop = None
        return copy

    def generation(self) -> tuple[int, int]:
        """Changes whenever anything may have been committed since the last call: by this
        object's writer, or by any other connection (another worker process, `dockyard gc`).
        Memoised reads compare it to decide whether they are still current.

        Other connections' commits are seen through SQLite's `PRAGMA data_version`. On an
        event loop, the value read is kept until the callbacks queued so far have run: many
        small requests handled in one turn of the loop then cost one query. That is safe
        because aiohttp starts each request's handler in a task of its own, queued once the
        request has arrived. A handler that runs before the value is forgotten was queued
        before it was read, so its request had arrived: a commit made before its client sent
        it is seen all the same. A request that arrives later is handled after the value is
        forgotten. From Python 3.12 aiohttp starts handlers eagerly, inside the callback that
        takes the request from the connection's queue; that callback may have been queued
        before a pipelined request arrived, so there every call asks SQLite.
        """
        version = self._version
        if version is None or self._version_loop is not _running_loop():
            (version,) = self._reader_conn.execute("PRAGMA data_version").fetchone()
            loop = _running_loop() if _HANDLERS_QUEUED else None
            if loop is not None:
                self._version, self._version_loop = version, loop
                loop.call_soon(self._forget_version)
        return version, self._commits

    def _forget_version(self) -> None:
        self._version = self._version_loop = None

    def read_sync(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run a read-only query function on the reader connection (fast, indexed reads)."""
        return fn(self._reader_conn, *args, **kw)

    async def read(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run a read-only query function; reads are short so they run inline."""
        return fn(self._reader_conn, *args, **kw)

    def write_sync(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run a function inside one write transaction on the calling thread."""
        conn = self._writer_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args, **kw)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._commits += 1  # also after a rollback: that costs one spare re-read
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise StorageFullError(
                    "registry storage is full: the metadata database cannot grow"
                ) from exc
            raise
        return result

    async def write(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run a function inside one write transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.write_sync(fn, *args, **kw))

    def ping(self) -> bool:
        """Whether the database answers a query."""
        try:
            self._reader_conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return not self._closed

    def close(self) -> None:
        """Finish queued writes and close both connections."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._reader_conn.close()
        if self._writer_conn is not self._reader_conn:
            self._writer_conn.close()
