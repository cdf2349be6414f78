"""Manifests, tags and referrers of the local registry."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dockyard.errors import (
    DigestInvalidError,
    ManifestBlobUnknownError,
    ManifestTooLargeError,
    ManifestUnknownError,
    NameUnknownError,
)
from dockyard.metadata import Database
from dockyard.metadata import queries as q
from dockyard.metadata.memo import GenerationMemo
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, is_digest_like
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import is_valid_tag, validate_tag

# What the store keeps of manifests it has just read (see ManifestStore.get).
RECENT_BYTES = 8 * 1024**2
RECENT_MAX_MANIFEST = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class PutManifestResult:
    digest: Digest
    subject: Digest | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Referrer:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str]

    def descriptor(self) -> dict[str, object]:
        """The descriptor the referrers API lists for this manifest."""
        entry: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            entry["artifactType"] = self.artifact_type
        if self.annotations:
            entry["annotations"] = self.annotations
        return entry


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference is a digest or a tag; anything else is refused."""
    if is_digest_like(reference):
        return Digest.parse(reference)
    return validate_tag(reference)


def lookup_reference(repo: str, reference: str) -> Digest | str:
    """parse_reference for reads and deletes: no manifest can have a tag that is not
    valid, so such a tag is unknown (404 MANIFEST_UNKNOWN, as the spec requires for a
    manifest that is not found) rather than refused; only a push refuses it with 400."""
    if is_digest_like(reference):
        return Digest.parse(reference)
    if not is_valid_tag(reference):
        raise ManifestUnknownError(detail={"name": repo, "reference": reference[:300]})
    return reference


class ManifestStore:
    """Stores manifests exactly as pushed, with their references, tags and subject."""

    def __init__(
        self,
        db: Database,
        max_size: int,
        child_required: Callable[[tuple[str, str] | None], bool] | None = None,
    ) -> None:
        self._db = db
        self.max_size = max_size
        # Whether an index entry with this (os, architecture) must already be stored when the
        # index is pushed (validation.manifests.indexes); all of them by default.
        self._child_required = child_required or (lambda platform: True)
        # Last pull per repository, kept in memory and written in batches (no write per GET).
        self._pulls: dict[tuple[str, str], float] = {}
        # Manifests just read, by (repository, reference): a tag pulled by many nodes is
        # read from the database once per change of the database.
        self._recent: GenerationMemo[tuple[str, str], StoredManifest] = GenerationMemo(
            lambda m: len(m.content), RECENT_BYTES, RECENT_MAX_MANIFEST
        )

    async def get(self, repo: str, reference: str) -> StoredManifest:
        """A manifest by tag or digest; MANIFEST_UNKNOWN (or NAME_UNKNOWN) if absent."""
        generation = self._db.generation()
        key = (repo, reference)
        manifest = self._recent.get(generation, key)
        if manifest is None:
            ref = lookup_reference(repo, reference)
            if isinstance(ref, Digest):
                row = await self._db.read(q.manifest_by_digest, repo, str(ref))
            else:
                row = await self._db.read(q.manifest_by_tag, repo, ref)
            if row is None:
                raise ManifestUnknownError(detail={"name": repo, "reference": reference})
            manifest = StoredManifest(Digest.parse(row.digest), row.media_type, row.content)
            self._recent.put(generation, key, manifest)
        self.note_pull(repo, str(manifest.digest))
        return manifest

    def note_pull(self, repo: str, digest: str) -> None:
        """Remember that a manifest was just pulled (for last-pull and eviction order)."""
        self._pulls[(repo, digest)] = time.time()

    async def flush_pulls(self) -> int:
        """Write the pull times gathered since the last flush; returns how many repositories."""
        pulls, self._pulls = self._pulls, {}
        if pulls:
            await self._db.write(q.record_pulls, pulls)
        return len(pulls)

    async def put(
        self,
        repo: str,
        reference: str,
        content_type: str | None,
        data: bytes,
        extra_tags: Sequence[str] = (),
        *,
        check_references: bool = True,
    ) -> PutManifestResult:
        """Validate and store a manifest, tagging it when the reference is a tag.

        The cache stores upstream manifests before their blobs arrive, so it skips the
        check that every referenced blob and manifest is already here.
        """
        if len(data) > self.max_size:
            raise ManifestTooLargeError(
                f"manifest is {len(data)} bytes; the limit is {self.max_size}"
            )
        ref = parse_reference(reference)
        tags = [validate_tag(t) for t in extra_tags]
        media = mt.strip_parameters(content_type) if content_type else None
        manifest = parse_manifest(data, media)
        if isinstance(ref, Digest):
            digest = Digest.of(data, ref.algorithm)
            if digest != ref:
                raise DigestInvalidError(
                    "manifest digest does not match the reference it was pushed to",
                    detail={"reference": str(ref), "actual": str(digest)},
                )
        else:
            digest = Digest.of(data)
            tags.insert(0, ref)
        record = q.ManifestWrite(
            digest=str(digest),
            media_type=manifest.media_type,
            content=data,
            subject=str(manifest.subject.digest) if manifest.subject else None,
            artifact_type=manifest.referrer_artifact_type,
            annotations=json.dumps(manifest.annotations) if manifest.annotations else None,
            blobs=tuple(str(d.digest) for d in manifest.blob_references()),
            children=tuple(str(d.digest) for d in manifest.manifests),
        )
        required_children = tuple(
            str(d.digest) for d in manifest.manifests if self._child_required(d.platform)
        )

        def store(conn: sqlite3.Connection) -> None:
            repo_id = q.ensure_repository(conn, repo)
            # Checked inside the write transaction so a racing delete cannot slip between.
            missing = []
            if check_references:
                missing = q.missing_blobs(conn, repo_id, record.blobs)
                missing += q.missing_manifests(conn, repo_id, required_children)
            if missing:
                raise ManifestBlobUnknownError(
                    f"manifest references {len(missing)} unknown blob(s) or manifest(s)",
                    detail={"missing": missing[:20]},
                )
            q.put_manifest(conn, repo_id, record, tags)

        await self._db.write(store)
        subject = manifest.subject.digest if manifest.subject else None
        return PutManifestResult(digest, subject, tuple(tags))

    async def tag_updated(self, repo: str, tag: str) -> float | None:
        """When a tag was last written or revalidated (epoch seconds), or None if absent."""
        return await self._db.read(q.tag_updated, repo, tag)

    async def touch_tag(self, repo: str, tag: str) -> None:
        """Mark a tag as revalidated now."""
        await self._db.write(q.touch_tag, repo, tag)

    async def delete(self, repo: str, reference: str) -> None:
        """Delete by digest removes the manifest and its tags; by tag removes only the tag."""
        ref = lookup_reference(repo, reference)
        if isinstance(ref, Digest):
            deleted = await self._db.write(q.delete_manifest, repo, str(ref))
        else:
            deleted = await self._db.write(q.delete_tag, repo, ref)
        if not deleted:
            raise ManifestUnknownError(detail={"name": repo, "reference": reference})

    async def tags(self, repo: str, last: str, limit: int) -> list[str]:
        """Tags after `last`, in byte order; NAME_UNKNOWN for an unknown repository."""
        repo_id = await self._db.read(q.repository_id, repo)
        if repo_id is None:
            raise NameUnknownError(detail={"name": repo})
        return await self._db.read(q.list_tags, repo_id, last, limit)

    async def referrers(
        self, repo: str, subject: Digest, artifact_type: str | None
    ) -> list[Referrer]:
        """Manifests in `repo` whose subject is `subject`, optionally of one artifact type."""
        rows = await self._db.read(q.referrers, repo, str(subject), artifact_type)
        return [
            Referrer(
                r.media_type,
                r.digest,
                r.size,
                r.artifact_type,
                json.loads(r.annotations) if r.annotations else {},
            )
            for r in rows
        ]

    async def catalog(self, last: str, limit: int) -> list[str]:
        """Repository names after `last` that hold at least one manifest."""
        return await self._db.read(q.catalog, last, limit)
