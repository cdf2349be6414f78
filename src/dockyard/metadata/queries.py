"""Queries over the metadata schema. Each takes a connection; callers choose the transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManifestRow:
    digest: str
    media_type: str
    size: int
    content: bytes


@dataclass(frozen=True, slots=True)
class ReferrerRow:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: str | None


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    repository: str
    algorithm: str
    created: float
    updated: float
    owner: str | None


@dataclass(frozen=True, slots=True)
class ManifestWrite:
    """Everything stored for one pushed manifest."""

    digest: str
    media_type: str
    content: bytes
    subject: str | None
    artifact_type: str | None
    annotations: str | None
    blobs: tuple[str, ...]
    children: tuple[str, ...]


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching names that start with `prefix`."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# -- repositories -------------------------------------------------------------------------


def repository_id(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def ensure_repository(conn: sqlite3.Connection, name: str) -> int:
    conn.execute(
        "INSERT INTO repositories(name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        (name, time.time()),
    )
    repo_id = repository_id(conn, name)
    assert repo_id is not None
    return repo_id


def repository_exists(conn: sqlite3.Connection, name: str) -> bool:
    return repository_id(conn, name) is not None


def catalog(conn: sqlite3.Connection, last: str, limit: int) -> list[str]:
    """Repositories holding at least one manifest, after `last`, in byte order."""
    rows = conn.execute(
        "SELECT name FROM repositories r WHERE name > ? "
        "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id) "
        "ORDER BY name LIMIT ?",
        (last, limit),
    ).fetchall()
    return [row[0] for row in rows]


def record_pulls(conn: sqlite3.Connection, pulls: dict[tuple[str, str], float]) -> None:
    """Last-pull times of manifests and their repositories."""
    conn.executemany(
        "UPDATE repositories SET last_pull = MAX(COALESCE(last_pull, 0), ?) WHERE name = ?",
        [(when, repo) for (repo, _digest), when in pulls.items()],
    )
    conn.executemany(
        "UPDATE manifests SET last_access = MAX(COALESCE(last_access, 0), ?) "
        "WHERE digest = ? AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        [(when, digest, repo) for (repo, digest), when in pulls.items()],
    )


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    name: str
    manifests: int
    tags: int
    blob_bytes: int
    manifest_bytes: int
    last_pull: float | None


def repository_usage(conn: sqlite3.Connection, prefix: str = "") -> list[RepositoryUsage]:
    """Per repository: manifests, tags, bytes of linked blobs and manifests, last pull."""
    rows = conn.execute(
        "SELECT r.name, "
        "(SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id), "
        "(SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id), "
        "(SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb "
        " JOIN blobs b ON b.digest = rb.digest WHERE rb.repo_id = r.id), "
        "(SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repo_id = r.id), "
        "r.last_pull FROM repositories r WHERE r.name LIKE ? ESCAPE '\\' ORDER BY r.name",
        (like_prefix(prefix),),
    ).fetchall()
    return [RepositoryUsage(*row) for row in rows]


def distinct_blob_bytes(conn: sqlite3.Connection, prefix: str) -> int:
    """Bytes of the distinct blobs linked to repositories under a name prefix."""
    pattern = like_prefix(prefix)
    row = conn.execute(
        "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE digest IN ("
        "SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repo_id "
        "WHERE r.name LIKE ? ESCAPE '\\')",
        (pattern,),
    ).fetchone()
    return int(row[0])


# -- blobs --------------------------------------------------------------------------------


def blob_size(conn: sqlite3.Connection, digest: str) -> int | None:
    row = conn.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else int(row[0])


def linked_blob_size(conn: sqlite3.Connection, repo: str, digest: str) -> int | None:
    """The size of a blob if it is visible in the repository."""
    row = conn.execute(
        "SELECT b.size FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest "
        "JOIN repositories r ON r.id = rb.repo_id WHERE r.name = ? AND b.digest = ?",
        (repo, digest),
    ).fetchone()
    return None if row is None else int(row[0])


def missing_blobs(conn: sqlite3.Connection, repo_id: int, digests: Iterable[str]) -> list[str]:
    return [
        d
        for d in dict.fromkeys(digests)
        if conn.execute(
            "SELECT 1 FROM repository_blobs WHERE repo_id = ? AND digest = ?", (repo_id, d)
        ).fetchone()
        is None
    ]


def insert_blob(conn: sqlite3.Connection, digest: str, size: int) -> None:
    conn.execute(
        "INSERT INTO blobs(digest, size, created) VALUES (?, ?, ?) ON CONFLICT(digest) DO NOTHING",
        (digest, size, time.time()),
    )


def link_blob(conn: sqlite3.Connection, repo_id: int, digest: str) -> None:
    conn.execute(
        "INSERT INTO repository_blobs(repo_id, digest, created) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (repo_id, digest, time.time()),
    )


def unlink_blob(conn: sqlite3.Connection, repo: str, digest: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM repository_blobs WHERE digest = ? "
        "AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        (digest, repo),
    )
    return cursor.rowcount > 0


# -- manifests and tags -------------------------------------------------------------------


def manifest_by_digest(conn: sqlite3.Connection, repo: str, digest: str) -> ManifestRow | None:
    row = conn.execute(
        "SELECT m.digest, m.media_type, m.size, m.content FROM manifests m "
        "JOIN repositories r ON r.id = m.repo_id WHERE r.name = ? AND m.digest = ?",
        (repo, digest),
    ).fetchone()
    return None if row is None else ManifestRow(row[0], row[1], row[2], bytes(row[3]))


def manifest_by_tag(conn: sqlite3.Connection, repo: str, tag: str) -> ManifestRow | None:
    row = conn.execute(
        "SELECT m.digest, m.media_type, m.size, m.content FROM tags t "
        "JOIN repositories r ON r.id = t.repo_id "
        "JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest "
        "WHERE r.name = ? AND t.name = ?",
        (repo, tag),
    ).fetchone()
    return None if row is None else ManifestRow(row[0], row[1], row[2], bytes(row[3]))


def missing_manifests(conn: sqlite3.Connection, repo_id: int, digests: Iterable[str]) -> list[str]:
    return [
        d
        for d in dict.fromkeys(digests)
        if conn.execute(
            "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?", (repo_id, d)
        ).fetchone()
        is None
    ]


def put_manifest(
    conn: sqlite3.Connection, repo_id: int, manifest: ManifestWrite, tags: Iterable[str]
) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO manifests(repo_id, digest, media_type, size, content, subject, "
        "artifact_type, annotations, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(repo_id, digest) DO UPDATE SET media_type = excluded.media_type",
        (
            repo_id,
            manifest.digest,
            manifest.media_type,
            len(manifest.content),
            manifest.content,
            manifest.subject,
            manifest.artifact_type,
            manifest.annotations,
            now,
        ),
    )
    conn.executemany(
        "INSERT INTO manifest_references(repo_id, parent, child, kind) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [(repo_id, manifest.digest, d, "blob") for d in manifest.blobs]
        + [(repo_id, manifest.digest, d, "manifest") for d in manifest.children],
    )
    conn.executemany(
        "INSERT INTO tags(repo_id, name, digest, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest, "
        "updated = excluded.updated",
        [(repo_id, tag, manifest.digest, now) for tag in tags],
    )


def delete_manifest(conn: sqlite3.Connection, repo: str, digest: str) -> bool:
    """Remove a manifest and every tag pointing at it (references cascade)."""
    repo_id = repository_id(conn, repo)
    if repo_id is None:
        return False
    conn.execute("DELETE FROM tags WHERE repo_id = ? AND digest = ?", (repo_id, digest))
    cursor = conn.execute(
        "DELETE FROM manifests WHERE repo_id = ? AND digest = ?", (repo_id, digest)
    )
    return cursor.rowcount > 0


def delete_tag(conn: sqlite3.Connection, repo: str, tag: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM tags WHERE name = ? "
        "AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        (tag, repo),
    )
    return cursor.rowcount > 0


def tag_updated(conn: sqlite3.Connection, repo: str, tag: str) -> float | None:
    row = conn.execute(
        "SELECT t.updated FROM tags t JOIN repositories r ON r.id = t.repo_id "
        "WHERE r.name = ? AND t.name = ?",
        (repo, tag),
    ).fetchone()
    return None if row is None else float(row[0])


def touch_tag(conn: sqlite3.Connection, repo: str, tag: str) -> None:
    conn.execute(
        "UPDATE tags SET updated = ? WHERE name = ? "
        "AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        (time.time(), tag, repo),
    )


def list_tags(conn: sqlite3.Connection, repo_id: int, last: str, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM tags WHERE repo_id = ? AND name > ? ORDER BY name LIMIT ?",
        (repo_id, last, limit),
    ).fetchall()
    return [row[0] for row in rows]


def referrers(
    conn: sqlite3.Connection, repo: str, subject: str, artifact_type: str | None
) -> list[ReferrerRow]:
    sql = (
        "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m "
        "JOIN repositories r ON r.id = m.repo_id WHERE r.name = ? AND m.subject = ?"
    )
    params: tuple[str, ...] = (repo, subject)
    if artifact_type is not None:
        sql += " AND m.artifact_type = ?"
        params += (artifact_type,)
    rows = conn.execute(sql + " ORDER BY m.created, m.digest", params).fetchall()
    return [ReferrerRow(*row) for row in rows]


# -- uploads ------------------------------------------------------------------------------


def insert_upload(
    conn: sqlite3.Connection,
    upload_id: str,
    repo_id: int,
    algorithm: str,
    owner: str | None = None,
) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO uploads(id, repo_id, algorithm, created, updated, owner) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (upload_id, repo_id, algorithm, now, now, owner),
    )


def get_upload(conn: sqlite3.Connection, upload_id: str) -> UploadRow | None:
    row = conn.execute(
        "SELECT u.id, r.name, u.algorithm, u.created, u.updated, u.owner FROM uploads u "
        "JOIN repositories r ON r.id = u.repo_id WHERE u.id = ?",
        (upload_id,),
    ).fetchone()
    return None if row is None else UploadRow(*row)


def touch_upload(conn: sqlite3.Connection, upload_id: str) -> None:
    conn.execute("UPDATE uploads SET updated = ? WHERE id = ?", (time.time(), upload_id))


def delete_upload(conn: sqlite3.Connection, upload_id: str) -> bool:
    return conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0


def stale_uploads(conn: sqlite3.Connection, older_than: float) -> list[str]:
    rows = conn.execute("SELECT id FROM uploads WHERE updated < ?", (older_than,)).fetchall()
    return [row[0] for row in rows]


def commit_blob(
    conn: sqlite3.Connection, upload_id: str | None, repo_id: int, digest: str, size: int
) -> None:
    """Record a committed blob, link it into the repository and close the upload session."""
    insert_blob(conn, digest, size)
    link_blob(conn, repo_id, digest)
    if upload_id is not None:
        delete_upload(conn, upload_id)
