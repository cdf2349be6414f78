"""Processes opening a new store together (workers, a CLI beside the server) migrate once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from dockyard.metadata import Database
from dockyard.metadata.schema import MIGRATIONS


def _open(path: str) -> None:
    Database(Path(path)).close()


def test_concurrent_first_opens_migrate_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open, args=(str(path),)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT COUNT(*) FROM repositories").fetchone()[0] == 0
    finally:
        conn.close()
