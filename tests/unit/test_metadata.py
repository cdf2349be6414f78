"""Unit tests for dockyard.metadata: schema migrations, the Database wrapper and queries."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.metadata import Database, schema
from dockyard.metadata import queries as q
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest

TABLES = {
    "repositories",
    "blobs",
    "repository_blobs",
    "manifests",
    "manifest_references",
    "tags",
    "uploads",
}


def d(name: str) -> str:
    """A real-looking digest string for a label."""
    return str(Digest.of(name.encode()))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "meta" / "registry.db")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def conn(db: Database) -> sqlite3.Connection:
    """The writer connection, for direct query tests (autocommit unless a test opens BEGIN)."""
    return db._writer_conn


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A controllable clock for the timestamps queries write."""
    now = [1000.0]
    monkeypatch.setattr(q, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def manifest(
    name: str,
    *,
    media_type: str = mt.OCI_MANIFEST,
    subject: str | None = None,
    artifact_type: str | None = None,
    annotations: str | None = None,
    blobs: tuple[str, ...] = (),
    children: tuple[str, ...] = (),
) -> q.ManifestWrite:
    content = f'{{"name": "{name}"}}'.encode()
    return q.ManifestWrite(
        digest=str(Digest.of(content)),
        media_type=media_type,
        content=content,
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        blobs=blobs,
        children=children,
    )


def push(
    conn: sqlite3.Connection, repo: str, m: q.ManifestWrite, tags: tuple[str, ...] = ()
) -> int:
    repo_id = q.ensure_repository(conn, repo)
    for blob in m.blobs:
        q.insert_blob(conn, blob, 10)
        q.link_blob(conn, repo_id, blob)
    q.put_manifest(conn, repo_id, m, tags)
    return repo_id


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


# -- schema ---------------------------------------------------------------------------


def test_schema_is_migrated(conn: sqlite3.Connection) -> None:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names >= TABLES
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    assert version == len(schema.MIGRATIONS)


def test_migrate_is_idempotent() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        schema.migrate(conn)
        conn.execute("INSERT INTO repositories(name, created) VALUES ('kept', 0)")
        schema.migrate(conn)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        assert version == len(schema.MIGRATIONS)
        assert conn.execute("SELECT name FROM repositories").fetchall() == [("kept",)]
    finally:
        conn.close()


def test_failed_migration_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = "CREATE TABLE half_done (x INTEGER); THIS IS NOT SQL;"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            schema.migrate(conn)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        # The good migrations stay; the broken one left nothing behind.
        assert version == len(schema.MIGRATIONS) - 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables
        assert "repositories" in tables
        assert not conn.in_transaction
    finally:
        conn.close()


def test_new_migrations_apply_to_an_existing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "registry.db"
    Database(path).close()
    extra = "CREATE TABLE later (x INTEGER);"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, extra))
    db = Database(path)
    try:
        version = db.read_sync(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == len(schema.MIGRATIONS)
        assert db.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM later").fetchone()[0]) == 0
    finally:
        db.close()


def test_pragmas(db: Database) -> None:
    for c in (db._writer_conn, db._reader_conn):
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db._reader_conn.execute("PRAGMA query_only").fetchone()[0] == 1


def test_foreign_keys_are_enforced(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    with pytest.raises(sqlite3.IntegrityError):
        q.link_blob(conn, repo_id, d("never inserted"))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO tags(repo_id, name, digest, updated) VALUES (?, 'latest', ?, 0)",
            (repo_id, d("no such manifest")),
        )
    with pytest.raises(sqlite3.IntegrityError):
        q.insert_upload(conn, "u", repo_id + 100, "sha256")


def test_reference_kind_is_checked(conn: sqlite3.Connection) -> None:
    repo_id = push(conn, "r", manifest("m"))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO manifest_references(repo_id, parent, child, kind) VALUES (?, ?, ?, ?)",
            (repo_id, manifest("m").digest, d("x"), "tag"),
        )


# -- the Database wrapper -------------------------------------------------------------


def test_database_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "registry.db"
    db = Database(path)
    try:
        assert path.exists()
        assert db.path == path
    finally:
        db.close()


def test_writes_are_visible_to_reads(db: Database) -> None:
    db.write_sync(q.ensure_repository, "library/alpine")
    assert db.read_sync(q.repository_exists, "library/alpine")


def test_write_sync_commits_and_returns(db: Database) -> None:
    repo_id = db.write_sync(q.ensure_repository, "a")
    assert repo_id == db.read_sync(q.repository_id, "a")
    assert not db._writer_conn.in_transaction


def test_write_sync_rolls_back_on_error(db: Database) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        q.ensure_repository(conn, "doomed")
        q.insert_blob(conn, d("doomed"), 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        db.write_sync(half_then_fail)
    assert not db.read_sync(q.repository_exists, "doomed")
    assert db.read_sync(q.blob_size, d("doomed")) is None
    assert not db._writer_conn.in_transaction
    # The connection is still usable.
    db.write_sync(q.ensure_repository, "fine")
    assert db.read_sync(q.repository_exists, "fine")


def test_write_sync_rolls_back_on_constraint_error(db: Database) -> None:
    def bad(conn: sqlite3.Connection) -> None:
        repo_id = q.ensure_repository(conn, "r")
        q.link_blob(conn, repo_id, d("missing"))

    with pytest.raises(sqlite3.IntegrityError):
        db.write_sync(bad)
    assert not db.read_sync(q.repository_exists, "r")


def test_reader_cannot_write(db: Database) -> None:
    with pytest.raises(sqlite3.OperationalError):
        db.read_sync(q.ensure_repository, "sneaky")
    assert not db.read_sync(q.repository_exists, "sneaky")


def test_async_read_and_write(db: Database) -> None:
    threads: list[str] = []

    def record_thread(conn: sqlite3.Connection, name: str) -> int:
        threads.append(threading.current_thread().name)
        return q.ensure_repository(conn, name)

    async def main() -> tuple[list[int], bool]:
        ids = await asyncio.gather(*(db.write(record_thread, f"repo{i}") for i in range(10)))
        exists = await db.read(q.repository_exists, "repo7")
        return list(ids), exists

    ids, exists = asyncio.run(main())
    assert exists
    assert len(set(ids)) == 10
    # Every write ran on the single writer thread, never on the event loop's thread.
    assert len(set(threads)) == 1
    assert threads[0].startswith("dockyard-db")


def test_async_write_rolls_back_and_raises(db: Database) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        q.ensure_repository(conn, "x")
        raise ValueError("nope")

    async def main() -> None:
        await db.write(fail)

    with pytest.raises(ValueError, match="nope"):
        asyncio.run(main())
    assert not db.read_sync(q.repository_exists, "x")


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    first = Database(path)
    m = manifest("persisted")
    first.write_sync(push, "r", m, ("v1",))
    first.close()
    second = Database(path)
    try:
        row = second.read_sync(q.manifest_by_tag, "r", "v1")
        assert row is not None
        assert row.content == m.content
    finally:
        second.close()


def test_ping_and_close(tmp_path: Path) -> None:
    db = Database(tmp_path / "registry.db")
    assert db.ping() is True
    db.close()
    assert db.ping() is False
    db.close()  # idempotent


# -- repositories and catalog ---------------------------------------------------------


def test_ensure_repository_is_idempotent(conn: sqlite3.Connection) -> None:
    first = q.ensure_repository(conn, "library/ubuntu")
    second = q.ensure_repository(conn, "library/ubuntu")
    other = q.ensure_repository(conn, "library/debian")
    assert first == second != other
    assert q.repository_id(conn, "library/ubuntu") == first
    assert q.repository_id(conn, "nope") is None
    assert q.repository_exists(conn, "library/debian")
    assert not q.repository_exists(conn, "library")


def test_catalog_lists_only_repositories_with_manifests(conn: sqlite3.Connection) -> None:
    for name in ["b", "a/z", "a", "c", "a-b"]:
        push(conn, name, manifest(name))
    q.ensure_repository(conn, "empty")  # an upload started, nothing pushed
    assert q.catalog(conn, "", 100) == ["a", "a-b", "a/z", "b", "c"]


def test_catalog_pagination(conn: sqlite3.Connection) -> None:
    names = [f"repo{i:02d}" for i in range(7)]
    for name in reversed(names):
        push(conn, name, manifest(name))
    pages: list[list[str]] = []
    last = ""
    while page := q.catalog(conn, last, 3):
        pages.append(page)
        last = page[-1]
    assert pages == [names[0:3], names[3:6], names[6:7]]
    assert q.catalog(conn, "repo03", 2) == ["repo04", "repo05"]
    assert q.catalog(conn, "zzz", 10) == []


def test_catalog_uses_byte_order(conn: sqlite3.Connection) -> None:
    for name in ["b", "a_b", "a.b", "a-b", "a/b", "ab", "a0"]:
        push(conn, name, manifest(name))
    listed = q.catalog(conn, "", 100)
    assert listed == sorted(listed, key=lambda s: s.encode())


# -- blobs ----------------------------------------------------------------------------


def test_blob_size_and_idempotent_insert(conn: sqlite3.Connection) -> None:
    assert q.blob_size(conn, d("b")) is None
    q.insert_blob(conn, d("b"), 42)
    q.insert_blob(conn, d("b"), 99)  # same content, same digest: the first record stays
    assert q.blob_size(conn, d("b")) == 42
    assert count(conn, "blobs") == 1


def test_blob_visibility_is_per_repository(conn: sqlite3.Connection) -> None:
    a = q.ensure_repository(conn, "a")
    q.ensure_repository(conn, "b")
    q.insert_blob(conn, d("layer"), 7)
    q.link_blob(conn, a, d("layer"))
    q.link_blob(conn, a, d("layer"))  # linking twice is harmless
    assert q.linked_blob_size(conn, "a", d("layer")) == 7
    assert q.linked_blob_size(conn, "b", d("layer")) is None
    assert q.linked_blob_size(conn, "nope", d("layer")) is None
    assert q.blob_size(conn, d("layer")) == 7


def test_unlink_blob(conn: sqlite3.Connection) -> None:
    a = q.ensure_repository(conn, "a")
    b = q.ensure_repository(conn, "b")
    q.insert_blob(conn, d("layer"), 7)
    q.link_blob(conn, a, d("layer"))
    q.link_blob(conn, b, d("layer"))
    assert q.unlink_blob(conn, "a", d("layer")) is True
    assert q.unlink_blob(conn, "a", d("layer")) is False
    assert q.unlink_blob(conn, "nope", d("layer")) is False
    assert q.linked_blob_size(conn, "a", d("layer")) is None
    # Still linked elsewhere, and the content record stays.
    assert q.linked_blob_size(conn, "b", d("layer")) == 7
    assert q.blob_size(conn, d("layer")) == 7


def test_missing_blobs_keeps_order_and_drops_duplicates(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    q.insert_blob(conn, d("have"), 1)
    q.link_blob(conn, repo_id, d("have"))
    q.insert_blob(conn, d("elsewhere"), 1)  # exists, but not linked here
    wanted = [d("z"), d("have"), d("a"), d("z"), d("elsewhere")]
    assert q.missing_blobs(conn, repo_id, wanted) == [d("z"), d("a"), d("elsewhere")]
    assert q.missing_blobs(conn, repo_id, []) == []
    assert q.missing_blobs(conn, repo_id, iter([d("have")])) == []


def test_commit_blob_records_links_and_closes_the_upload(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    q.insert_upload(conn, "u1", repo_id, "sha256")
    q.commit_blob(conn, "u1", repo_id, d("blob"), 123)
    assert q.linked_blob_size(conn, "r", d("blob")) == 123
    assert q.get_upload(conn, "u1") is None


def test_commit_blob_without_upload(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    q.commit_blob(conn, None, repo_id, d("blob"), 5)
    q.commit_blob(conn, None, repo_id, d("blob"), 5)
    assert q.linked_blob_size(conn, "r", d("blob")) == 5
    assert count(conn, "repository_blobs") == 1


# -- manifests and tags ---------------------------------------------------------------


def test_put_and_get_manifest(conn: sqlite3.Connection) -> None:
    m = manifest("img", blobs=(d("config"), d("layer")))
    push(conn, "r", m, ("latest", "v1"))
    by_digest = q.manifest_by_digest(conn, "r", m.digest)
    assert by_digest == q.ManifestRow(m.digest, m.media_type, len(m.content), m.content)
    assert isinstance(by_digest.content, bytes)
    assert q.manifest_by_tag(conn, "r", "latest") == by_digest
    assert q.manifest_by_tag(conn, "r", "v1") == by_digest
    assert q.manifest_by_tag(conn, "r", "v2") is None
    assert q.manifest_by_digest(conn, "other", m.digest) is None
    refs = conn.execute(
        "SELECT child, kind FROM manifest_references WHERE parent = ? ORDER BY child",
        (m.digest,),
    ).fetchall()
    assert refs == sorted([(d("config"), "blob"), (d("layer"), "blob")])


def test_manifests_are_per_repository(conn: sqlite3.Connection) -> None:
    m = manifest("shared")
    push(conn, "a", m, ("latest",))
    push(conn, "b", m)
    assert q.manifest_by_digest(conn, "b", m.digest) is not None
    assert q.manifest_by_tag(conn, "b", "latest") is None
    assert q.delete_manifest(conn, "a", m.digest) is True
    assert q.manifest_by_digest(conn, "b", m.digest) is not None


def test_pushing_the_same_manifest_again(conn: sqlite3.Connection) -> None:
    m = manifest("img", blobs=(d("layer"),))
    push(conn, "r", m, ("v1",))
    push(conn, "r", m, ("v2",))
    assert count(conn, "manifests") == 1
    assert count(conn, "manifest_references") == 1
    assert q.list_tags(conn, q.ensure_repository(conn, "r"), "", 10) == ["v1", "v2"]


def test_tag_moves_to_the_newest_manifest(conn: sqlite3.Connection, clock: list[float]) -> None:
    old, new = manifest("old"), manifest("new")
    push(conn, "r", old, ("latest",))
    clock[0] = 2000.0
    push(conn, "r", new, ("latest",))
    row = q.manifest_by_tag(conn, "r", "latest")
    assert row is not None
    assert row.digest == new.digest
    assert q.tag_updated(conn, "r", "latest") == 2000.0
    # The old manifest is still there by digest, untagged.
    assert q.manifest_by_digest(conn, "r", old.digest) is not None


def test_index_children_are_manifest_references(conn: sqlite3.Connection) -> None:
    child = manifest("child")
    index = manifest("index", media_type=mt.OCI_INDEX, children=(child.digest,))
    repo_id = push(conn, "r", child)
    assert q.missing_manifests(conn, repo_id, [child.digest, d("absent")]) == [d("absent")]
    push(conn, "r", index, ("multi",))
    kinds = conn.execute(
        "SELECT child, kind FROM manifest_references WHERE parent = ?", (index.digest,)
    ).fetchall()
    assert kinds == [(child.digest, "manifest")]


def test_missing_manifests_dedupes(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    assert q.missing_manifests(conn, repo_id, [d("x"), d("y"), d("x")]) == [d("x"), d("y")]


def test_delete_manifest_removes_tags_and_references(conn: sqlite3.Connection) -> None:
    m = manifest("img", blobs=(d("layer"),))
    keep = manifest("keep")
    push(conn, "r", m, ("latest", "v1"))
    push(conn, "r", keep, ("stable",))
    assert q.delete_manifest(conn, "r", m.digest) is True
    assert q.manifest_by_digest(conn, "r", m.digest) is None
    assert q.manifest_by_tag(conn, "r", "latest") is None
    assert q.list_tags(conn, q.ensure_repository(conn, "r"), "", 10) == ["stable"]
    assert conn.execute(
        "SELECT COUNT(*) FROM manifest_references WHERE parent = ?", (m.digest,)
    ).fetchone() == (0,)
    # Blobs stay: garbage collection is a separate concern.
    assert q.linked_blob_size(conn, "r", d("layer")) == 10
    assert q.delete_manifest(conn, "r", m.digest) is False
    assert q.delete_manifest(conn, "nope", keep.digest) is False


def test_delete_tag(conn: sqlite3.Connection) -> None:
    m = manifest("img")
    push(conn, "r", m, ("a", "b"))
    push(conn, "other", m, ("a",))
    assert q.delete_tag(conn, "r", "a") is True
    assert q.delete_tag(conn, "r", "a") is False
    assert q.delete_tag(conn, "nope", "b") is False
    assert q.manifest_by_tag(conn, "r", "a") is None
    assert q.manifest_by_tag(conn, "r", "b") is not None
    assert q.manifest_by_tag(conn, "other", "a") is not None
    assert q.manifest_by_digest(conn, "r", m.digest) is not None


def test_list_tags_sorted_and_paginated(conn: sqlite3.Connection) -> None:
    tags = ("v2", "latest", "v10", "V1", "1.0", "_x", "v1")
    repo_id = push(conn, "r", manifest("img"), tags)
    expected = sorted(tags, key=lambda t: t.encode())
    assert q.list_tags(conn, repo_id, "", 100) == expected
    assert q.list_tags(conn, repo_id, "", 3) == expected[:3]
    assert q.list_tags(conn, repo_id, expected[2], 3) == expected[3:6]
    assert q.list_tags(conn, repo_id, expected[-1], 3) == []
    other = q.ensure_repository(conn, "empty")
    assert q.list_tags(conn, other, "", 10) == []


def test_tag_updated_and_touch_tag(conn: sqlite3.Connection, clock: list[float]) -> None:
    push(conn, "r", manifest("img"), ("latest",))
    assert q.tag_updated(conn, "r", "latest") == 1000.0
    assert q.tag_updated(conn, "r", "missing") is None
    assert q.tag_updated(conn, "nope", "latest") is None
    clock[0] = 1500.0
    q.touch_tag(conn, "r", "latest")
    assert q.tag_updated(conn, "r", "latest") == 1500.0
    q.touch_tag(conn, "r", "missing")  # no such tag: nothing happens
    assert q.tag_updated(conn, "r", "missing") is None


# -- referrers ------------------------------------------------------------------------


def test_referrers(conn: sqlite3.Connection, clock: list[float]) -> None:
    image = manifest("image")
    push(conn, "r", image, ("latest",))
    sbom = manifest(
        "sbom", subject=image.digest, artifact_type="application/sbom", annotations='{"a":"1"}'
    )
    sig = manifest("sig", subject=image.digest, artifact_type="application/sig")
    unrelated = manifest("other", subject=d("something else"), artifact_type="application/sbom")
    for t, m in [(1001.0, sig), (1002.0, sbom), (1003.0, unrelated)]:
        clock[0] = t
        push(conn, "r", m)
    push(conn, "elsewhere", manifest("sbom2", subject=image.digest, artifact_type="x"))

    rows = q.referrers(conn, "r", image.digest, None)
    assert [r.digest for r in rows] == [sig.digest, sbom.digest]  # oldest first
    by_digest = {r.digest: r for r in rows}
    assert by_digest[sbom.digest] == q.ReferrerRow(
        sbom.digest, mt.OCI_MANIFEST, len(sbom.content), "application/sbom", '{"a":"1"}'
    )
    assert by_digest[sig.digest].annotations is None

    filtered = q.referrers(conn, "r", image.digest, "application/sbom")
    assert [r.digest for r in filtered] == [sbom.digest]
    assert q.referrers(conn, "r", image.digest, "application/none") == []
    assert q.referrers(conn, "r", d("no referrers"), None) == []
    assert q.referrers(conn, "nope", image.digest, None) == []


def test_referrers_order_is_stable(conn: sqlite3.Connection, clock: list[float]) -> None:
    subject = d("subject")
    pushed = []
    for i in range(5):
        clock[0] = 1000.0 + (i % 2)  # ties on created are broken by digest
        m = manifest(f"ref{i}", subject=subject)
        push(conn, "r", m)
        pushed.append((clock[0], m.digest))
    rows = q.referrers(conn, "r", subject, None)
    assert [r.digest for r in rows] == [digest for _, digest in sorted(pushed)]


def test_referrers_go_away_with_their_manifest(conn: sqlite3.Connection) -> None:
    subject = d("subject")
    ref = manifest("ref", subject=subject)
    push(conn, "r", ref)
    q.delete_manifest(conn, "r", ref.digest)
    assert q.referrers(conn, "r", subject, None) == []


# -- uploads --------------------------------------------------------------------------


def test_upload_lifecycle(conn: sqlite3.Connection, clock: list[float]) -> None:
    repo_id = q.ensure_repository(conn, "library/app")
    q.insert_upload(conn, "u1", repo_id, "sha512")
    assert q.get_upload(conn, "u1") == q.UploadRow(
        "u1", "library/app", "sha512", 1000.0, 1000.0, None
    )
    clock[0] = 1234.0
    q.touch_upload(conn, "u1")
    row = q.get_upload(conn, "u1")
    assert row is not None
    assert (row.created, row.updated) == (1000.0, 1234.0)
    assert q.delete_upload(conn, "u1") is True
    assert q.delete_upload(conn, "u1") is False
    assert q.get_upload(conn, "u1") is None


def test_upload_ids_are_unique(conn: sqlite3.Connection) -> None:
    repo_id = q.ensure_repository(conn, "r")
    q.insert_upload(conn, "same", repo_id, "sha256")
    with pytest.raises(sqlite3.IntegrityError):
        q.insert_upload(conn, "same", repo_id, "sha256")


def test_get_unknown_upload(conn: sqlite3.Connection) -> None:
    assert q.get_upload(conn, "nope") is None


def test_stale_uploads(conn: sqlite3.Connection, clock: list[float]) -> None:
    repo_id = q.ensure_repository(conn, "r")
    for i, t in enumerate([100.0, 200.0, 300.0]):
        clock[0] = t
        q.insert_upload(conn, f"u{i}", repo_id, "sha256")
    clock[0] = 400.0
    q.touch_upload(conn, "u0")  # recently active again
    assert sorted(q.stale_uploads(conn, 250.0)) == ["u1"]
    assert sorted(q.stale_uploads(conn, 300.0)) == ["u1"]  # strictly older than
    assert sorted(q.stale_uploads(conn, 1000.0)) == ["u0", "u1", "u2"]
    assert q.stale_uploads(conn, 0.0) == []


# -- usage and pull statistics --------------------------------------------------------


def test_upgrade_from_the_first_schema_keeps_data(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with monkeypatch.context() as m:
            m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
            schema.migrate(conn)
        conn.execute("INSERT INTO repositories(name, created) VALUES ('old', 5)")
        schema.migrate(conn)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        assert version == len(schema.MIGRATIONS)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(repositories)")}
        assert "last_pull" in columns
        assert conn.execute("SELECT name, created, last_pull FROM repositories").fetchall() == [
            ("old", 5.0, None)
        ]
    finally:
        conn.close()


def test_record_pulls_only_moves_forward(conn: sqlite3.Connection) -> None:
    q.ensure_repository(conn, "a")
    q.ensure_repository(conn, "b")
    q.record_pulls(conn, {("a", "sha256:x"): 100.0, ("unknown", "sha256:y"): 50.0})
    # an older, late-flushed batch
    q.record_pulls(conn, {("a", "sha256:x"): 90.0, ("b", "sha256:z"): 10.0})
    q.record_pulls(conn, {})
    usage = {u.name: u.last_pull for u in q.repository_usage(conn)}
    assert usage == {"a": 100.0, "b": 10.0}
    assert not q.repository_exists(conn, "unknown")


def test_repository_usage(conn: sqlite3.Connection) -> None:
    image = manifest("image", blobs=(d("config"), d("layer")))  # blobs of 10 bytes each
    other = manifest("other")
    push(conn, "team/app", image, ("latest", "v1"))
    push(conn, "team/app", other)
    q.ensure_repository(conn, "team/empty")
    push(conn, "solo", manifest("solo"), ("x",))
    q.record_pulls(conn, {("team/app", image.digest): 42.0})

    usage = q.repository_usage(conn)
    assert [u.name for u in usage] == ["solo", "team/app", "team/empty"]
    app = usage[1]
    assert app == q.RepositoryUsage(
        name="team/app",
        manifests=2,
        tags=2,
        blob_bytes=20,
        manifest_bytes=len(image.content) + len(other.content),
        last_pull=42.0,
    )
    assert usage[2] == q.RepositoryUsage("team/empty", 0, 0, 0, 0, None)
    assert [u.name for u in q.repository_usage(conn, "team/")] == ["team/app", "team/empty"]
    assert q.repository_usage(conn, "nothing/") == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a_b/", ["a_b/x"]),  # "_" is literal, not LIKE's any-character
        ("a%b/", ["a%b/x"]),  # "%" is literal, not LIKE's wildcard
        ("a\\b/", ["a\\b/x"]),  # so is the escape character itself
        ("", ["a%b/x", "a\\b/x", "a_b/x", "axb/x"]),
    ],
)
def test_usage_prefix_is_literal(
    conn: sqlite3.Connection, prefix: str, expected: list[str]
) -> None:
    # Raw names (not valid repository names) to probe the LIKE escaping.
    for name in ["a_b/x", "axb/x", "a%b/x", "a\\b/x"]:
        q.ensure_repository(conn, name)
    assert [u.name for u in q.repository_usage(conn, prefix)] == expected


def test_distinct_blob_bytes(conn: sqlite3.Connection) -> None:
    shared = d("shared")
    for repo in ["team/a", "team/b", "other/c"]:
        repo_id = q.ensure_repository(conn, repo)
        q.insert_blob(conn, shared, 100)
        q.link_blob(conn, repo_id, shared)
    q.insert_blob(conn, d("only-b"), 7)
    q.link_blob(conn, q.ensure_repository(conn, "team/b"), d("only-b"))
    q.insert_blob(conn, d("unlinked"), 1000)

    # A blob shared by two repositories under the prefix counts once.
    assert q.distinct_blob_bytes(conn, "team/") == 107
    assert q.distinct_blob_bytes(conn, "other/") == 100
    assert q.distinct_blob_bytes(conn, "") == 107
    assert q.distinct_blob_bytes(conn, "none/") == 0
    assert q.distinct_blob_bytes(conn, "team_") == 0
