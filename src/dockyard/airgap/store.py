"""Writing imported content into a Dockyard store: staged, verified, committed, then linked.

Blobs stream into a staging file under `uploads/` (hashed on the way) and are committed —
renamed into place with their metadata row — only once their digest is verified. They
belong to no repository until `write_image` links them, in the same step that writes the
manifests naming them, so a refused import leaves nothing visible in any repository (gc
later frees blobs that no manifest came to use). The CLI runs this inside its own event
loop, which serves nothing else: reading the bundle synchronously blocks no client.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.airgap.compression import Compression, DiffDigester, detect
from dockyard.airgap.entries import Readable
from dockyard.airgap.errors import BundleError
from dockyard.errors import RegistryError
from dockyard.metadata import ops_queries as oq
from dockyard.metadata import queries as q
from dockyard.oci.digest import Digest, new_hasher
from dockyard.registry import Registry
from dockyard.registry.paths import blob_key, upload_key

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Bytes written to a staging file, with what hashing them found."""

    key: str
    digest: Digest
    size: int
    diff_hex: str | None  # sha256 of the decompressed bytes, when asked for
    compression: Compression


@dataclass(frozen=True, slots=True)
class ManifestDoc:
    digest: Digest
    content: bytes


@dataclass
class ImagePlan:
    """One image to write: its manifests (children first, its own last) and its blobs."""

    name: str
    repository: str
    tag: str | None
    manifests: list[ManifestDoc]
    blobs: dict[Digest, int]
    platforms: list[str] = field(default_factory=list)

    @property
    def digest(self) -> Digest:
        return self.manifests[-1].digest

    @property
    def size(self) -> int:
        return sum(self.blobs.values()) + sum(len(m.content) for m in self.manifests)


@dataclass
class WriteStats:
    blobs_written: int = 0
    bytes_written: int = 0
    blobs_present: int = 0


class ImportStore:
    """The store an import writes to (the registry of one root, opened in-process)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._driver = registry.driver
        self._staged: set[str] = set()
        self.stats = WriteStats()

    @property
    def manifest_limit(self) -> int:
        return self._registry.manifests.max_size

    def blob_size(self, digest: Digest) -> int | None:
        """The size of a committed blob whose file is in place, or None."""
        size = self._registry.blobs.exists_anywhere(digest)
        if size is None or self._driver.stat(blob_key(digest)) is None:
            return None
        return size

    def stage(
        self,
        reader: Readable,
        algorithm: str = "sha256",
        diff: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> StagedBlob:
        """Stream `reader` into a new staging file, hashing it (and its diff ID if asked)."""
        key = upload_key(f"import-{uuid.uuid4()}")
        hasher = new_hasher(algorithm)
        digester = DiffDigester(hash_plain=False) if diff else None
        size = 0
        self._staged.add(key)
        writer = self._driver.open_append(key)
        try:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                hasher.update(chunk)
                if digester is not None:
                    digester.update(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        except BaseException:
            writer.close()
            self.discard_key(key)
            raise
        writer.close()
        digest = Digest.from_hasher(hasher)
        compression = digester.compression if digester is not None else "none"
        diff_hex = None
        if digester is not None:
            # A plain layer is its own diff: the hash of its bytes, computed once above.
            diff_hex = digest.hex if compression == "none" else digester.hexdigest()
        return StagedBlob(key, digest, size, diff_hex, compression)

    async def commit(self, staged: StagedBlob) -> None:
        """Publish a verified staged blob (or drop it when the store has it already)."""
        if self.blob_size(staged.digest) is not None:
            self.discard_key(staged.key)
            self.stats.blobs_present += 1
            return
        try:
            await self._registry.blobs.commit_staged(None, staged.key, staged.digest, staged.size)
        except FileNotFoundError:
            raise BundleError(
                f"the staging file of {staged.digest} was removed while importing (a concurrent "
                "garbage collection?); run the import again, it resumes"
            ) from None
        self._staged.discard(staged.key)
        self.stats.blobs_written += 1
        self.stats.bytes_written += staged.size

    async def ingest(
        self,
        reader: Readable,
        expected: Digest,
        where: str,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stage, verify against `expected` and commit; BundleError when it does not match."""
        staged = self.stage(reader, expected.algorithm, progress=progress)
        if staged.digest != expected:
            self.discard_key(staged.key)
            raise BundleError(
                f"{where} is corrupted: its content hashes to {staged.digest}, not {expected}"
            )
        await self.commit(staged)
        return staged.size

    def discard_key(self, key: str) -> None:
        self._driver.delete(key)
        self._staged.discard(key)

    def discard_all(self) -> None:
        """Remove every staging file not committed (a refused or interrupted import)."""
        for key in list(self._staged):
            self.discard_key(key)

    def read_blob(self, digest: Digest, limit: int, where: str) -> bytes:
        """A committed blob's content (a manifest or config), refusing anything over `limit`."""
        with self._driver.open_read(blob_key(digest)) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise BundleError(f"{where}: {digest} is larger than {limit} bytes")
        return data

    def read_staged(self, staged: StagedBlob, limit: int, where: str) -> bytes:
        if staged.size > limit:
            raise BundleError(f"{where} is larger than {limit} bytes")
        return b"".join(self._driver.read_staged(staged.key, CHUNK))

    def compression_of(self, digest: Digest) -> Compression:
        with self._driver.open_read(blob_key(digest)) as f:
            return detect(f.read(4))

    async def write_image(self, plan: ImagePlan) -> str:
        """Link the image's blobs and write its manifests, then its tag.

        Returns "new", "updated" (the tag pointed elsewhere) or "unchanged".
        """
        db = self._registry.db
        repo, digest = plan.repository, str(plan.digest)
        if plan.tag is not None:
            current = await db.read(q.manifest_by_tag, repo, plan.tag)
        else:
            current = await db.read(q.manifest_by_digest, repo, digest)
        if current is not None and current.digest == digest:
            return "unchanged"
        now = time.time()

        def link(conn: sqlite3.Connection) -> None:
            missing = [d for d in plan.blobs if q.blob_size(conn, str(d)) is None]
            if missing:
                raise BundleError(
                    f"blob {missing[0]} left the store during the import (a concurrent garbage "
                    "collection?); run the import again, it resumes"
                )
            repo_id = q.ensure_repository(conn, repo)
            for d in plan.blobs:
                q.link_blob(conn, repo_id, str(d))
            # Young again: the collector's grace period protects them from here on.
            oq.touch_blobs(conn, {str(d): now for d in plan.blobs})

        await db.write(link)
        manifests = self._registry.manifests
        try:
            for doc in plan.manifests[:-1]:
                if await db.read(q.manifest_by_digest, repo, str(doc.digest)) is None:
                    await manifests.put(repo, str(doc.digest), None, doc.content)
            top = plan.manifests[-1]
            await manifests.put(repo, plan.tag or digest, None, top.content)
        except RegistryError as exc:
            raise BundleError(
                f"{plan.name}: the registry refused a manifest: {exc.message}"
            ) from None
        return "new" if current is None else "updated"
