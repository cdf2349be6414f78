"""Memoised reads: GenerationMemo, Database.generation, and the manifests ManifestStore keeps.

A kept manifest must never outlive a change to the database, whoever made it: this
process, another worker process on the same store, or `dockyard gc`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import ManifestUnknownError
from dockyard.metadata import Database
from dockyard.metadata import queries as q
from dockyard.metadata.memo import GenerationMemo
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.registry.manifests import ManifestStore


def memo(max_bytes: int = 100, max_value: int = 50) -> GenerationMemo[str, bytes]:
    return GenerationMemo(len, max_bytes, max_value)


def test_memo_keeps_values_within_a_generation() -> None:
    kept = memo()
    assert kept.get(1, "a") is None
    kept.put(1, "a", b"x" * 10)
    assert kept.get(1, "a") == b"x" * 10
    assert kept.get(1, "b") is None


def test_memo_forgets_everything_when_the_generation_changes() -> None:
    kept = memo()
    kept.get(1, "a")
    kept.put(1, "a", b"old")
    assert kept.get(2, "a") is None
    assert len(kept) == 0
    # Going back to an earlier generation value is also a change.
    kept.put(2, "a", b"new")
    assert kept.get(1, "a") is None


def test_memo_ignores_a_value_read_in_an_older_generation() -> None:
    kept = memo()
    kept.get(1, "a")
    kept.get(2, "b")  # the database changed while "a" was being read
    kept.put(1, "a", b"stale")
    assert kept.get(2, "a") is None


def test_memo_is_bounded_by_bytes_oldest_first() -> None:
    kept = memo(max_bytes=100, max_value=50)
    kept.get(1, "")
    for key in "abcd":
        kept.put(1, key, b"x" * 30)
    assert [kept.get(1, k) is not None for k in "abcd"] == [False, True, True, True]
    kept.put(1, "big", b"x" * 51)  # over max_value: never kept
    assert kept.get(1, "big") is None
    assert len(kept) == 3


def test_memo_does_not_replace_a_kept_value() -> None:
    kept = memo()
    kept.get(1, "")
    kept.put(1, "a", b"first")
    kept.put(1, "a", b"second")
    assert kept.get(1, "a") == b"first"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "registry.db")
    try:
        yield database
    finally:
        database.close()


def test_generation_changes_with_this_databases_writes(db: Database) -> None:
    before = db.generation()
    assert db.generation() == before  # reading changes nothing
    db.write_sync(q.ensure_repository, "a")
    after = db.generation()
    assert after != before
    asyncio.run(db.write(q.ensure_repository, "b"))
    assert db.generation() != after


def test_generation_changes_after_a_rolled_back_write(db: Database) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        q.ensure_repository(conn, "a")
        raise RuntimeError("boom")

    before = db.generation()
    with pytest.raises(RuntimeError):
        db.write_sync(fail)
    assert db.generation() != before


def test_generation_changes_with_another_connections_commit(db: Database, tmp_path: Path) -> None:
    before = db.generation()
    other = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
    try:
        other.execute("INSERT INTO repositories (name, created) VALUES ('from-elsewhere', 0)")
    finally:
        other.close()
    assert db.generation() != before


def test_generation_asks_sqlite_once_per_turn_of_the_event_loop(
    db: Database, tmp_path: Path
) -> None:
    """On a loop, another connection's commit is seen from the next turn on: a request that
    arrives after it is handled in a later turn. Outside a loop, at once (see above)."""

    def commit_elsewhere(name: str) -> None:
        other = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
        try:
            other.execute("INSERT INTO repositories (name, created) VALUES (?, 0)", (name,))
        finally:
            other.close()

    async def run() -> None:
        before = db.generation()
        commit_elsewhere("a")
        same_turn = db.generation()
        await asyncio.sleep(0)
        next_turn = db.generation()
        assert next_turn != before
        # Python 3.12+: aiohttp starts handlers eagerly, and every call asks SQLite.
        assert (same_turn == before) is (sys.version_info < (3, 12))
        # Writes of this Database are seen at once, whatever the turn.
        await db.write(q.ensure_repository, "b")
        assert db.generation() != next_turn

    asyncio.run(run())


def test_generation_changes_in_a_snapshot(db: Database) -> None:
    """A snapshot writes and reads on one connection, which data_version does not see."""
    copy = db.snapshot()
    try:
        before = copy.generation()
        copy.write_sync(q.ensure_repository, "a")
        assert copy.generation() != before
    finally:
        copy.close()


def image(label: str) -> bytes:
    """A small OCI image manifest; its blobs need not exist (check_references=False)."""

    def descriptor(media_type: str, content: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": str(Digest.of(content.encode())), "size": 1}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", f"config {label}"),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", f"layer {label}")],
        }
    ).encode()


def push(store: ManifestStore, repo: str, tag: str, data: bytes) -> str:
    result = asyncio.run(store.put(repo, tag, mt.OCI_MANIFEST, data, check_references=False))
    return str(result.digest)


def get(store: ManifestStore, repo: str, reference: str) -> str:
    return str(asyncio.run(store.get(repo, reference)).digest)


def test_a_manifest_read_again_comes_from_memory(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ManifestStore(db, 4 * 1024**2)
    digest = push(store, "app", "v1", image("one"))
    queries: list[str] = []
    by_tag, by_digest = q.manifest_by_tag, q.manifest_by_digest

    def counted_by_tag(conn: sqlite3.Connection, repo: str, tag: str) -> q.ManifestRow | None:
        queries.append(tag)
        return by_tag(conn, repo, tag)

    def counted_by_digest(conn: sqlite3.Connection, repo: str, ref: str) -> q.ManifestRow | None:
        queries.append(ref)
        return by_digest(conn, repo, ref)

    monkeypatch.setattr(q, "manifest_by_tag", counted_by_tag)
    monkeypatch.setattr(q, "manifest_by_digest", counted_by_digest)
    for _ in range(3):
        assert get(store, "app", "v1") == digest
        assert get(store, "app", digest) == digest
    assert queries == ["v1", digest]
    push(store, "other", "v1", image("two"))  # any commit starts over
    assert get(store, "app", "v1") == digest
    assert queries == ["v1", digest, "v1"]


def test_a_tag_moved_by_another_worker_is_seen(db: Database, tmp_path: Path) -> None:
    """Two Database objects on one file, as `serve --workers 2` has in two processes."""
    here = ManifestStore(db, 4 * 1024**2)
    first = push(here, "app", "v1", image("one"))
    assert get(here, "app", "v1") == first
    other_db = Database(tmp_path / "registry.db")
    try:
        second = push(ManifestStore(other_db, 4 * 1024**2), "app", "v1", image("two"))
    finally:
        other_db.close()
    assert second != first
    assert get(here, "app", "v1") == second
    assert get(here, "app", first) == first  # still there by digest


def test_a_manifest_deleted_by_another_process_is_gone(db: Database, tmp_path: Path) -> None:
    store = ManifestStore(db, 4 * 1024**2)
    digest = push(store, "app", "v1", image("one"))
    assert get(store, "app", digest) == digest
    assert get(store, "app", "v1") == digest
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA foreign_keys=ON')\n"
        "conn.execute('DELETE FROM tags')\n"
        "conn.execute('DELETE FROM manifest_references')\n"
        "conn.execute('DELETE FROM manifests')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "registry.db")], check=True)
    for reference in ("v1", digest):
        with pytest.raises(ManifestUnknownError):
            asyncio.run(store.get("app", reference))


def test_a_tag_deleted_here_is_gone(db: Database) -> None:
    store = ManifestStore(db, 4 * 1024**2)
    digest = push(store, "app", "v1", image("one"))
    assert get(store, "app", "v1") == digest
    asyncio.run(store.delete("app", "v1"))
    with pytest.raises(ManifestUnknownError):
        asyncio.run(store.get("app", "v1"))
    assert get(store, "app", digest) == digest


def test_reads_still_record_pulls(db: Database) -> None:
    store = ManifestStore(db, 4 * 1024**2)
    digest = push(store, "app", "v1", image("one"))
    get(store, "app", "v1")
    store._pulls.clear()
    get(store, "app", "v1")  # from memory
    assert ("app", digest) in store._pulls
