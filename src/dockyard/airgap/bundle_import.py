"""Importing a bundle: an OCI image layout or a `docker save` archive, in one pass.

The bundle is read front to back once (a compressed archive cannot be read any other way):
content-addressed files (`blobs/<alg>/<hex>`) are verified against their names and
committed as they pass; other files (the layers and configs of `docker save` archives) are
staged and hashed, and committed only once the image config's diff IDs confirm them. Blobs
the store already has are not read again, so an interrupted import resumes. Then every
image is checked — all of its manifests and blobs present, sizes as declared — before the
first manifest is written: a damaged or incomplete bundle is refused as a whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.airgap import docker_archive as da
from dockyard.airgap.entries import BundleSource, normalise
from dockyard.airgap.errors import BundleError
from dockyard.airgap.layout import (
    DOCKER_MANIFEST_FILE,
    INDEX_FILE,
    METADATA_FILES,
    METADATA_LIMIT,
    IndexEntry,
    digest_of_path,
    parse_index,
    platform_text,
)
from dockyard.airgap.naming import name_from_annotations, parse_name, target
from dockyard.airgap.report import ImportReport, Skipped
from dockyard.airgap.store import ImagePlan, ImportStore, ManifestDoc, StagedBlob
from dockyard.errors import RegistryError
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import parse_manifest

_HEX_NAME = re.compile(r"^(?:.*/)?([a-f0-9]{64})(?:\.json)?$")
_MAX_DEPTH = 4  # index -> index -> manifest is the deepest real nesting


@dataclass
class _Scan:
    metadata: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[Digest, int] = field(default_factory=dict)  # committed content-addressed files
    files: dict[str, StagedBlob] = field(default_factory=dict)  # other files, staged only
    links: dict[str, str] = field(default_factory=dict)


class BundleImporter:
    """Imports bundles into one store, optionally under a repository prefix."""

    def __init__(
        self,
        store: ImportStore,
        prefix: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._progress = progress or (lambda _done, _total: None)

    async def run(self, source: BundleSource) -> ImportReport:
        """Import one bundle; BundleError, with no image of it visible, when it is unusable."""
        report = ImportReport(str(source.path), stats=self._store.stats)
        try:
            scan = await self._scan(source)
            if INDEX_FILE in scan.metadata:
                plans = self._plan_oci(scan, report)
            elif DOCKER_MANIFEST_FILE in scan.metadata:
                plans = await self._plan_docker(scan, report)
            else:
                raise BundleError(
                    f"{source.path}: neither index.json (OCI layout) nor manifest.json "
                    "(docker save) found: not an image bundle, or truncated"
                )
            for plan in plans:
                report.images.append((plan, await self._store.write_image(plan)))
        finally:
            self._store.discard_all()
        return report

    # -- reading ----------------------------------------------------------------------------

    async def _scan(self, source: BundleSource) -> _Scan:
        scan = _Scan()
        total = source.total

        def tick(_n: int) -> None:
            self._progress(source.consumed, total)

        for entry in source.entries():
            if entry.reader is None:
                if entry.link_target is not None:
                    scan.links[entry.name] = entry.link_target
                continue
            if entry.name in METADATA_FILES:
                data = entry.reader.read(METADATA_LIMIT + 1)
                if len(data) > METADATA_LIMIT:
                    raise BundleError(f"{entry.name} is larger than {METADATA_LIMIT} bytes")
                scan.metadata[entry.name] = data
            elif (digest := digest_of_path(entry.name)) is not None:
                present = self._store.blob_size(digest)
                if present is None:
                    present = await self._store.ingest(entry.reader, digest, entry.name, tick)
                else:
                    self._store.stats.blobs_present += 1
                scan.blobs[digest] = present
            else:
                scan.files[entry.name] = self._store.stage(entry.reader, diff=True, progress=tick)
            tick(0)
        return scan

    def _blob(self, scan: _Scan, digest: Digest, size: int, what: str) -> int:
        """The size of a blob the bundle (or the store) has; BundleError if it is missing."""
        have = scan.blobs.get(digest)
        if have is None:
            have = self._store.blob_size(digest)
        if have is None:
            raise BundleError(f"bundle is incomplete (truncated?): {what} {digest} is missing")
        if have != size:
            raise BundleError(f"{what} {digest} is {have} bytes, but its descriptor says {size}")
        return have

    # -- OCI image layout -------------------------------------------------------------------

    def _plan_oci(self, scan: _Scan, report: ImportReport) -> list[ImagePlan]:
        plans = []
        for entry in parse_index(scan.metadata[INDEX_FILE]):
            ref = name_from_annotations(entry.annotations)
            if ref is None:
                report.skipped.append(
                    Skipped(
                        str(entry.digest),
                        "no image name: index.json gives neither io.containerd.image.name "
                        "nor a full org.opencontainers.image.ref.name (write the bundle with "
                        "a full name, e.g. skopeo copy ... oci-archive:FILE:docker.io/org/app:1)",
                    )
                )
                continue
            try:
                name = target(ref, self._prefix)
            except ValueError as exc:
                report.skipped.append(Skipped(str(ref), str(exc)))
                continue
            if ref.digest is not None and ref.digest != entry.digest:
                raise BundleError(f"{ref}: index.json points it at {entry.digest}")
            manifests: list[ManifestDoc] = []
            blobs: dict[Digest, int] = {}
            platforms: list[str] = []
            self._walk(scan, entry, name.display, manifests, blobs, platforms, 0)
            plans.append(
                ImagePlan(name.display, name.repository, name.tag, manifests, blobs, platforms)
            )
        return plans

    def _walk(
        self,
        scan: _Scan,
        desc: IndexEntry,
        image: str,
        manifests: list[ManifestDoc],
        blobs: dict[Digest, int],
        platforms: list[str],
        depth: int,
    ) -> None:
        """Collect a manifest and everything under it, children first."""
        if depth > _MAX_DEPTH:
            raise BundleError(f"{image}: indexes nest deeper than {_MAX_DEPTH} levels")
        what = f"manifest of {image}"
        self._blob(scan, desc.digest, desc.size, what)
        content = self._store.read_blob(desc.digest, self._store.manifest_limit, what)
        try:
            manifest = parse_manifest(content, None)
        except RegistryError as exc:
            raise BundleError(f"{what} {desc.digest} is not valid: {exc.message}") from None
        child_platforms = _child_platforms(content) if manifest.manifests else {}
        for child in manifest.manifests:
            if any(m.digest == child.digest for m in manifests):
                continue
            self._walk(
                scan,
                IndexEntry(child.media_type, child.digest, child.size),
                image,
                manifests,
                blobs,
                platforms,
                depth + 1,
            )
            text = platform_text(child_platforms.get(str(child.digest)))
            if text:
                platforms.append(text)
        for blob in manifest.blob_references():
            blobs[blob.digest] = self._blob(scan, blob.digest, blob.size, f"blob of {image}")
        manifests.append(ManifestDoc(desc.digest, content))

    # -- docker save archives ---------------------------------------------------------------

    async def _plan_docker(self, scan: _Scan, report: ImportReport) -> list[ImagePlan]:
        plans: list[ImagePlan] = []
        used: dict[Digest, StagedBlob] = {}
        for image in da.parse_manifest_json(scan.metadata[DOCKER_MANIFEST_FILE]):
            config_digest, config_size, config = self._config(scan, image.config, used)
            ids = da.diff_ids(config, image.config)
            if len(ids) != len(image.layers):
                raise BundleError(
                    f"{image.config}: {len(ids)} diff IDs, but manifest.json lists "
                    f"{len(image.layers)} layers"
                )
            layers = [
                self._layer(scan, path, diff, used)
                for path, diff in zip(image.layers, ids, strict=True)
            ]
            _media_type, content = da.build_manifest(config_digest, config_size, layers)
            doc = ManifestDoc(Digest.of(content), content)
            blobs = {config_digest: config_size} | {layer.digest: layer.size for layer in layers}
            if not image.repo_tags:
                report.skipped.append(Skipped(str(config_digest), "untagged image (no RepoTags)"))
            for text in image.repo_tags:
                ref = parse_name(text)
                try:
                    if ref is None:
                        raise ValueError(f"{text}: not an image name")
                    name = target(ref, self._prefix)
                except ValueError as exc:
                    report.skipped.append(Skipped(text, str(exc)))
                    continue
                plans.append(ImagePlan(name.display, name.repository, name.tag, [doc], blobs))
        # Every image checked out: only now do the staged configs and layers become blobs.
        for staged in used.values():
            await self._store.commit(staged)
        return plans

    def _file(self, scan: _Scan, path: str) -> StagedBlob | tuple[Digest, int]:
        name = normalise(path) or path
        for _hop in range(8):
            if name not in scan.links:
                break
            name = scan.links[name]
        if name in scan.files:
            return scan.files[name]
        digest = digest_of_path(name)
        if digest is not None and digest in scan.blobs:
            return digest, scan.blobs[digest]
        raise BundleError(
            f"bundle is incomplete (truncated?): {path}, listed in manifest.json, is missing"
        )

    def _config(
        self, scan: _Scan, path: str, used: dict[Digest, StagedBlob]
    ) -> tuple[Digest, int, bytes]:
        found = self._file(scan, path)
        limit = self._store.manifest_limit
        if isinstance(found, StagedBlob):
            digest, size = found.digest, found.size
            data = self._store.read_staged(found, limit, path)
            named = _HEX_NAME.match(path)
            if named and named.group(1) != digest.hex:
                raise BundleError(f"{path} is corrupted: its content hashes to {digest}")
            used[digest] = found
        else:
            digest, size = found
            data = self._store.read_blob(digest, limit, path)
        return digest, size, data

    def _layer(
        self, scan: _Scan, path: str, diff: Digest, used: dict[Digest, StagedBlob]
    ) -> da.LayerBlob:
        found = self._file(scan, path)
        if isinstance(found, StagedBlob):
            if found.diff_hex != diff.hex:
                raise BundleError(
                    f"layer {path} is corrupted: its content does not match the diff ID {diff} "
                    "in the image config"
                )
            used[found.digest] = found
            return da.LayerBlob(found.digest, found.size, found.compression)
        digest, size = found  # content-addressed: already verified against its name
        return da.LayerBlob(digest, size, self._store.compression_of(digest))


def _child_platforms(index: bytes) -> dict[str, dict[str, object]]:
    """Child digest -> platform object, from an index's JSON (already parsed once as valid)."""
    found: dict[str, dict[str, object]] = {}
    for item in json.loads(index).get("manifests", []):
        if isinstance(item, dict) and isinstance(item.get("platform"), dict):
            found[str(item.get("digest"))] = item["platform"]
    return found
