"""Migrating a Distribution filesystem store into Dockyard, without re-pushing anything.

Three steps: read and check every live manifest of every repository (schema 1, missing
blobs and dangling index children are skipped with the reason); copy the blobs the kept
manifests need, each verified against its digest while it streams (a corrupted one skips
the manifests that need it); then write manifests, children first, and the current tags.
Running it again copies nothing twice and rewrites nothing that is already in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.airgap.distribution import DistributionRepository, DistributionStore
from dockyard.airgap.errors import BundleError
from dockyard.airgap.report import ImportReport, Skipped
from dockyard.airgap.store import ImagePlan, ImportStore, ManifestDoc
from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import Manifest, parse_manifest
from dockyard.oci.names import validate_name


@dataclass
class _Repo:
    source: DistributionRepository
    target: str
    manifests: dict[Digest, tuple[bytes, Manifest]] = field(default_factory=dict)


class DistributionMigrator:
    """Copies one Distribution store into the import store."""

    def __init__(
        self,
        store: ImportStore,
        source: DistributionStore,
        prefix: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._source = source
        self._prefix = prefix.strip("/") if prefix else None
        self._progress = progress or (lambda _done, _total: None)

    def plan(self, report: ImportReport) -> list[_Repo]:
        """Read every live manifest; keep those whose content is all there."""
        repos = []
        for source in self._source.repositories():
            report.skipped += source.skipped
            target = f"{self._prefix}/{source.name}" if self._prefix else source.name
            try:
                validate_name(target)
            except RegistryError:
                report.skipped.append(Skipped(source.name, f"{target!r} is no valid name"))
                continue
            repo = _Repo(source, target)
            for digest in source.revisions:
                self._read(repo, digest, report)
            self._drop_incomplete(repo, report)
            repos.append(repo)
        return repos

    def blobs_needed(self, repos: list[_Repo]) -> dict[Digest, int]:
        """Config and layer blobs of every kept manifest that the store does not have yet."""
        needed: dict[Digest, int] = {}
        for repo in repos:
            for _content, manifest in repo.manifests.values():
                for blob in manifest.blob_references():
                    if self._store.blob_size(blob.digest) is None:
                        needed[blob.digest] = blob.size
        return needed

    async def run(self) -> ImportReport:
        report = ImportReport(str(self._source.v2), stats=self._store.stats)
        repos = self.plan(report)
        failed: dict[Digest, str] = {}
        needed = self.blobs_needed(repos)
        total, done = sum(needed.values()), 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            self._progress(done, total)

        tick(0)
        try:
            for digest in needed:
                path = self._source.blob_path(digest)
                try:
                    with path.open("rb") as reader:
                        await self._store.ingest(reader, digest, str(path), tick)
                except BundleError as exc:
                    failed[digest] = exc.message
                except OSError as exc:
                    failed[digest] = f"cannot read {path}: {exc}"
        finally:
            self._store.discard_all()
        for repo in repos:
            await self._write(repo, failed, report)
        return report

    def _read(self, repo: _Repo, digest: Digest, report: ImportReport) -> None:
        where = f"{repo.source.name}@{digest}"
        limit = self._store.manifest_limit
        path = self._source.blob_path(digest)
        try:
            with path.open("rb") as f:
                content = f.read(limit + 1)
        except OSError:
            report.skipped.append(Skipped(where, "manifest content missing from blobs/"))
            return
        if len(content) > limit:
            report.skipped.append(Skipped(where, f"manifest larger than {limit} bytes"))
            return
        if Digest.of(content, digest.algorithm) != digest:
            report.skipped.append(Skipped(where, "manifest content is corrupted (digest differs)"))
            return
        try:
            manifest = parse_manifest(content, None)
        except RegistryError as exc:
            reason = exc.message
            if b"signatures" in content or mt.DOCKER_SCHEMA1 in reason:
                reason = "Docker schema 1 manifest (not supported; re-push it as schema 2 or OCI)"
            report.skipped.append(Skipped(where, reason))
            return
        repo.manifests[digest] = (content, manifest)

    def _drop_incomplete(self, repo: _Repo, report: ImportReport) -> None:
        """Skip manifests whose blobs are missing, then indexes whose children went."""
        for digest, (_content, manifest) in list(repo.manifests.items()):
            for blob in manifest.blob_references():
                size = self._source.blob_size(blob.digest)
                if size is None and self._store.blob_size(blob.digest) is None:
                    reason = f"blob {blob.digest} is missing from the store"
                elif size is not None and size != blob.size:
                    reason = f"blob {blob.digest} is {size} bytes, the manifest says {blob.size}"
                else:
                    continue
                report.skipped.append(Skipped(f"{repo.source.name}@{digest}", reason))
                del repo.manifests[digest]
                break
        changed = True
        while changed:
            changed = False
            for digest, (_content, manifest) in list(repo.manifests.items()):
                gone = [c.digest for c in manifest.manifests if c.digest not in repo.manifests]
                if gone:
                    report.skipped.append(
                        Skipped(
                            f"{repo.source.name}@{digest}",
                            f"index child {gone[0]} is missing or skipped",
                        )
                    )
                    del repo.manifests[digest]
                    changed = True

    def _plan_for(self, repo: _Repo, digest: Digest, tag: str | None) -> ImagePlan:
        docs: list[ManifestDoc] = []
        blobs: dict[Digest, int] = {}

        def collect(d: Digest) -> None:
            content, manifest = repo.manifests[d]
            for child in manifest.manifests:
                if all(doc.digest != child.digest for doc in docs):
                    collect(child.digest)
            for blob in manifest.blob_references():
                blobs[blob.digest] = blob.size
            docs.append(ManifestDoc(d, content))

        collect(digest)
        name = f"{repo.target}:{tag}" if tag else f"{repo.target}@{digest}"
        return ImagePlan(name, repo.target, tag, docs, blobs)

    async def _write(self, repo: _Repo, failed: dict[Digest, str], report: ImportReport) -> None:
        broken: dict[Digest, str] = {}
        for digest, (_content, manifest) in repo.manifests.items():
            for blob in manifest.blob_references():
                if blob.digest in failed:
                    broken[digest] = failed[blob.digest]
        for digest, reason in broken.items():
            report.skipped.append(Skipped(f"{repo.source.name}@{digest}", reason))
        written: set[Digest] = set()
        # Reported on their own: manifests neither tagged nor listed by an index.
        listed = set(repo.source.tags.values())
        for _content, manifest in repo.manifests.values():
            listed.update(child.digest for child in manifest.manifests)
        # Indexes after the manifests they list; each plan also writes its own children.
        order = sorted(repo.manifests, key=lambda d: bool(repo.manifests[d][1].manifests))
        for digest in order:
            plan = self._plan_for(repo, digest, None)
            lost = [doc.digest for doc in plan.manifests if doc.digest in broken]
            if lost:
                if digest not in broken:
                    reason = f"index child {lost[0]} was skipped"
                    report.skipped.append(Skipped(f"{repo.source.name}@{digest}", reason))
                continue
            status = await self._store.write_image(plan)
            written.add(digest)
            if digest not in listed:
                report.images.append((plan, status))
        for tag, digest in sorted(repo.source.tags.items()):
            if digest not in written:
                report.skipped.append(
                    Skipped(f"{repo.source.name}:{tag}", f"its manifest {digest} was skipped")
                )
                continue
            plan = self._plan_for(repo, digest, tag)
            report.images.append((plan, await self._store.write_image(plan)))
