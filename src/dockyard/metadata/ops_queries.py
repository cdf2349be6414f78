"""Queries for storage operations: garbage-collection marking, usage, eviction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from dockyard.metadata.queries import like_prefix

# Manifests kept by tags, and everything a kept manifest keeps: the child manifests of an
# index, and its referrers (manifests whose subject it is), transitively.
_KEPT_MANIFESTS = """
WITH RECURSIVE kept(repo_id, digest) AS (
    SELECT repo_id, digest FROM tags
    UNION
    SELECT mr.repo_id, mr.child FROM manifest_references mr
        JOIN kept k ON mr.repo_id = k.repo_id AND mr.parent = k.digest
        WHERE mr.kind = 'manifest'
    UNION
    SELECT m.repo_id, m.digest FROM manifests m
        JOIN kept k ON m.repo_id = k.repo_id AND m.subject = k.digest
)
"""


@dataclass(frozen=True, slots=True)
class ManifestCandidate:
    repository: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobCandidate:
    digest: str
    size: int


def untagged_manifests(conn: sqlite3.Connection, cutoff: float) -> list[ManifestCandidate]:
    """Manifests no tag keeps (directly, as an index child or as a referrer), older than cutoff."""
    rows = conn.execute(
        _KEPT_MANIFESTS + "SELECT r.name, m.digest, m.size FROM manifests m "
        "JOIN repositories r ON r.id = m.repo_id "
        "WHERE m.created < ? AND NOT EXISTS "
        "(SELECT 1 FROM kept k WHERE k.repo_id = m.repo_id AND k.digest = m.digest) "
        "ORDER BY r.name, m.digest",
        (cutoff,),
    ).fetchall()
    return [ManifestCandidate(*row) for row in rows]


def delete_manifest_if_untagged(
    conn: sqlite3.Connection, repository: str, digest: str, cutoff: float
) -> bool:
    """Delete one manifest if it is still unkept and old (checked inside the transaction)."""
    row = conn.execute(
        _KEPT_MANIFESTS + "SELECT m.repo_id FROM manifests m "
        "JOIN repositories r ON r.id = m.repo_id "
        "WHERE r.name = ? AND m.digest = ? AND m.created < ? AND NOT EXISTS "
        "(SELECT 1 FROM kept k WHERE k.repo_id = m.repo_id AND k.digest = m.digest)",
        (repository, digest, cutoff),
    ).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM manifests WHERE repo_id = ? AND digest = ?", (row[0], digest))
    return True


_UNREFERENCED = (
    "NOT EXISTS (SELECT 1 FROM manifest_references mr "
    "WHERE mr.child = b.digest AND mr.kind = 'blob') "
    "AND b.created < :cutoff AND COALESCE(b.last_access, 0) < :cutoff"
)


def unreferenced_blobs(conn: sqlite3.Connection, cutoff: float) -> list[BlobCandidate]:
    """Blobs no manifest references, created and last touched before the cutoff."""
    rows = conn.execute(
        f"SELECT b.digest, b.size FROM blobs b WHERE {_UNREFERENCED} ORDER BY b.digest",
        {"cutoff": cutoff},
    ).fetchall()
    return [BlobCandidate(*row) for row in rows]


def delete_blob_if_unreferenced(conn: sqlite3.Connection, digest: str, cutoff: float) -> bool:
    """Drop a blob's rows if it is still unreferenced and old (inside the transaction)."""
    row = conn.execute(
        f"SELECT 1 FROM blobs b WHERE b.digest = :digest AND {_UNREFERENCED}",
        {"digest": digest, "cutoff": cutoff},
    ).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM repository_blobs WHERE digest = ?", (digest,))
    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
    return True


def blob_known(conn: sqlite3.Connection, digest: str) -> bool:
    return conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is not None


def upload_ids(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT id FROM uploads")}


def touch_blobs(conn: sqlite3.Connection, accesses: dict[str, float]) -> None:
    conn.executemany(
        "UPDATE blobs SET last_access = MAX(COALESCE(last_access, 0), ?) WHERE digest = ?",
        [(when, digest) for digest, when in accesses.items()],
    )


@dataclass(frozen=True, slots=True)
class TagRow:
    repository: str
    tag: str
    digest: str
    updated: float
    last_pull: float | None


def all_tags(conn: sqlite3.Connection) -> list[TagRow]:
    rows = conn.execute(
        "SELECT r.name, t.name, t.digest, t.updated, m.last_access FROM tags t "
        "JOIN repositories r ON r.id = t.repo_id "
        "JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest "
        "ORDER BY r.name, t.updated DESC, t.name"
    ).fetchall()
    return [TagRow(*row) for row in rows]


def delete_tag_if_unchanged(conn: sqlite3.Connection, tag: TagRow) -> bool:
    """Delete a tag unless it was moved or re-pushed since it was read."""
    return (
        conn.execute(
            "DELETE FROM tags WHERE name = ? AND digest = ? AND updated = ? "
            "AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
            (tag.tag, tag.digest, tag.updated, tag.repository),
        ).rowcount
        > 0
    )


# -- usage ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """A repository's share of the store."""

    name: str
    referenced_bytes: int  # manifests plus the distinct blobs they reference
    exclusive_bytes: int  # what deleting the repository would free
    manifests: int
    tags: int
    last_pull: float | None


def repository_usage(conn: sqlite3.Connection) -> list[Usage]:
    """Per repository: bytes referenced, bytes only it references, manifests, tags, last pull."""
    rows = conn.execute(
        """
        WITH refs AS (
            SELECT DISTINCT mr.repo_id, mr.child AS digest FROM manifest_references mr
            WHERE mr.kind = 'blob'
        ),
        holders AS (
            SELECT digest, COUNT(*) AS n FROM refs GROUP BY digest
        )
        SELECT r.name,
            COALESCE((SELECT SUM(b.size) FROM refs JOIN blobs b ON b.digest = refs.digest
                      WHERE refs.repo_id = r.id), 0)
              + COALESCE((SELECT SUM(m.size) FROM manifests m WHERE m.repo_id = r.id), 0),
            COALESCE((SELECT SUM(b.size) FROM refs JOIN blobs b ON b.digest = refs.digest
                      JOIN holders h ON h.digest = refs.digest
                      WHERE refs.repo_id = r.id AND h.n = 1), 0)
              + COALESCE((SELECT SUM(m.size) FROM manifests m WHERE m.repo_id = r.id), 0),
            (SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id),
            (SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id),
            r.last_pull
        FROM repositories r
        WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
        """
    ).fetchall()
    return [Usage(*row) for row in rows]


def store_totals(conn: sqlite3.Connection, cached_prefixes: list[str]) -> tuple[int, int, int]:
    """(blob count, bytes of blobs referenced only from cached repositories, all blob bytes)."""
    count, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs").fetchone()
    if not cached_prefixes:
        return int(count), 0, int(total)
    is_cached = " OR ".join("r.name LIKE ? ESCAPE '\\'" for _ in cached_prefixes)
    patterns = [like_prefix(p) for p in cached_prefixes]
    (cached,) = conn.execute(
        f"""
        SELECT COALESCE(SUM(b.size), 0) FROM blobs b
        WHERE EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repo_id
                      WHERE rb.digest = b.digest AND ({is_cached}))
          AND NOT EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r
                          ON r.id = rb.repo_id
                          WHERE rb.digest = b.digest AND NOT ({is_cached}))
        """,
        patterns + patterns,
    ).fetchone()
    return int(count), int(cached), int(total)


def repository_count(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM repositories r WHERE EXISTS "
        "(SELECT 1 FROM manifests m WHERE m.repo_id = r.id)"
    ).fetchone()
    return int(count)


# -- cache eviction -------------------------------------------------------------------------


def _cached_clause(prefixes: list[str], alias: str = "r") -> tuple[str, list[str]]:
    clause = " OR ".join(f"{alias}.name LIKE ? ESCAPE '\\'" for _ in prefixes) or "0"
    return f"({clause})", [like_prefix(p) for p in prefixes]


@dataclass(frozen=True, slots=True)
class CachedImage:
    repository: str
    digest: str
    last_used: float


def cached_images_lru(conn: sqlite3.Connection, prefixes: list[str]) -> list[CachedImage]:
    """Tagged manifests of cached repositories, least recently pulled first."""
    clause, params = _cached_clause(prefixes)
    rows = conn.execute(
        "SELECT r.name, m.digest, COALESCE(m.last_access, m.created) AS used FROM manifests m "
        "JOIN repositories r ON r.id = m.repo_id "
        f"WHERE {clause} AND EXISTS "
        "(SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) "
        "ORDER BY used, r.name, m.digest",
        params,
    ).fetchall()
    return [CachedImage(*row) for row in rows]


def cached_manifests_older_than(
    conn: sqlite3.Connection, prefix: str, cutoff: float
) -> list[CachedImage]:
    clause, params = _cached_clause([prefix])
    rows = conn.execute(
        "SELECT r.name, m.digest, m.created FROM manifests m "
        f"JOIN repositories r ON r.id = m.repo_id WHERE {clause} AND m.created < ?",
        [*params, cutoff],
    ).fetchall()
    return [CachedImage(*row) for row in rows]


def evict_image(conn: sqlite3.Connection, repository: str, digest: str) -> list[str]:
    """Delete a cached manifest, its tags, and the child manifests nothing else keeps."""
    repo_row = conn.execute("SELECT id FROM repositories WHERE name = ?", (repository,)).fetchone()
    if repo_row is None:
        return []
    repo_id = repo_row[0]
    removed = []
    pending = [digest]
    while pending:
        current = pending.pop()
        children = [
            row[0]
            for row in conn.execute(
                "SELECT child FROM manifest_references WHERE repo_id = ? AND parent = ? "
                "AND kind = 'manifest'",
                (repo_id, current),
            )
        ]
        conn.execute("DELETE FROM tags WHERE repo_id = ? AND digest = ?", (repo_id, current))
        if conn.execute(
            "DELETE FROM manifests WHERE repo_id = ? AND digest = ?", (repo_id, current)
        ).rowcount:
            removed.append(current)
        for child in children:
            still_used = conn.execute(
                "SELECT 1 FROM manifest_references WHERE repo_id = ? AND child = ? "
                "UNION SELECT 1 FROM tags WHERE repo_id = ? AND digest = ?",
                (repo_id, child, repo_id, child),
            ).fetchone()
            if still_used is None:
                pending.append(child)
    return removed


def unreferenced_cached_blobs(conn: sqlite3.Connection, prefixes: list[str]) -> list[BlobCandidate]:
    """Blobs no manifest references that only cached repositories link (re-downloadable)."""
    clause, params = _cached_clause(prefixes)
    rows = conn.execute(
        "SELECT b.digest, b.size FROM blobs b WHERE NOT EXISTS "
        "(SELECT 1 FROM manifest_references mr WHERE mr.child = b.digest AND mr.kind = 'blob') "
        "AND EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repo_id "
        f"WHERE rb.digest = b.digest AND {clause}) "
        "AND NOT EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r "
        f"ON r.id = rb.repo_id WHERE rb.digest = b.digest AND NOT {clause})",
        params + params,
    ).fetchall()
    return [BlobCandidate(*row) for row in rows]


def delete_cached_blob(conn: sqlite3.Connection, digest: str, prefixes: list[str]) -> bool:
    """Drop a cached blob's rows if it is still unreferenced and only cached repos link it."""
    if digest not in {b.digest for b in _unreferenced_cached_one(conn, digest, prefixes)}:
        return False
    conn.execute("DELETE FROM repository_blobs WHERE digest = ?", (digest,))
    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
    return True


def _unreferenced_cached_one(
    conn: sqlite3.Connection, digest: str, prefixes: list[str]
) -> list[BlobCandidate]:
    clause, params = _cached_clause(prefixes)
    rows = conn.execute(
        "SELECT b.digest, b.size FROM blobs b WHERE b.digest = ? AND NOT EXISTS "
        "(SELECT 1 FROM manifest_references mr WHERE mr.child = b.digest AND mr.kind = 'blob') "
        "AND NOT EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r "
        f"ON r.id = rb.repo_id WHERE rb.digest = b.digest AND NOT {clause})",
        [digest, *params],
    ).fetchall()
    return [BlobCandidate(*row) for row in rows]


def pushed_bytes_under(conn: sqlite3.Connection, prefix: str, cached: list[str]) -> int:
    """Bytes of distinct blobs linked to non-cached repositories under a name prefix."""
    clause, params = _cached_clause(cached)
    (total,) = conn.execute(
        "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE EXISTS "
        "(SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repo_id "
        f"WHERE rb.digest = b.digest AND r.name LIKE ? ESCAPE '\\' AND NOT {clause})",
        [like_prefix(prefix), *params],
    ).fetchone()
    return int(total)
