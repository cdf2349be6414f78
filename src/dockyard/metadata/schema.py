"""The metadata schema and its migrations (applied in order, recorded in user_version)."""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE repositories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    -- Committed blobs, shared by every repository.
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        created REAL NOT NULL,
        last_access REAL
    );
    -- A blob is visible in a repository only through an upload, a mount or a manifest there.
    CREATE TABLE repository_blobs (
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest TEXT NOT NULL REFERENCES blobs(digest),
        created REAL NOT NULL,
        PRIMARY KEY (repo_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
    CREATE TABLE manifests (
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        content BLOB NOT NULL,
        subject TEXT,
        artifact_type TEXT,
        annotations TEXT,
        created REAL NOT NULL,
        last_access REAL,
        PRIMARY KEY (repo_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
    -- What each manifest points at: config and layer blobs, child manifests.
    CREATE TABLE manifest_references (
        repo_id INTEGER NOT NULL,
        parent TEXT NOT NULL,
        child TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
        PRIMARY KEY (repo_id, parent, child),
        FOREIGN KEY (repo_id, parent) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX manifest_references_child ON manifest_references(child);
    CREATE TABLE tags (
        repo_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (repo_id, name),
        FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        algorithm TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    """,
    """
    -- When a manifest of the repository was last pulled (flushed in batches).
    ALTER TABLE repositories ADD COLUMN last_pull REAL
    """,
    """
    -- The user who opened an upload session (NULL without authentication).
    ALTER TABLE uploads ADD COLUMN owner TEXT
    """,
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date; each migration runs in its own transaction.

    The version is read inside the write transaction, so processes starting together (the
    workers of `dockyard serve --workers`, a CLI command beside the server) apply each
    migration exactly once.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version >= len(MIGRATIONS):
                conn.execute("COMMIT")
                return
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
