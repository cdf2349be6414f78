"""Reading a Distribution (registry:2) filesystem store without its server.

The layout under `<rootdirectory>/docker/registry/v2`::

    blobs/sha256/ab/abcdef.../data                          every blob and manifest, once
    repositories/<name>/_manifests/revisions/sha256/<hex>/link   a manifest of the repository
    repositories/<name>/_manifests/tags/<tag>/current/link       what the tag points at now
    repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link   what it ever pointed at
    repositories/<name>/_layers/sha256/<hex>/link                a blob linked into it
    repositories/<name>/_uploads/<uuid>/...                      uploads in progress

A link file holds the digest it names. Deleting a manifest removes its revision `link`
(the directory stays) and the directories of the tags that pointed at it; the blob data
stays until Distribution's garbage collection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.airgap.errors import BundleError
from dockyard.airgap.report import Skipped
from dockyard.errors import RegistryError
from dockyard.oci.digest import Digest
from dockyard.oci.names import is_valid_tag, validate_name


@dataclass
class DistributionRepository:
    """One repository as Distribution left it: live revisions, current tags, what is off."""

    name: str
    revisions: list[Digest] = field(default_factory=list)
    tags: dict[str, Digest] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


class DistributionStore:
    """A Distribution filesystem store: `.../docker/registry/v2`, or a directory above it."""

    def __init__(self, root: Path) -> None:
        self.v2 = _find_v2(root)

    def blob_path(self, digest: Digest) -> Path:
        return self.v2 / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex / "data"

    def blob_size(self, digest: Digest) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def repositories(self) -> Iterator[DistributionRepository]:
        """Every repository (a directory holding `_manifests`), in name order."""
        base = self.v2 / "repositories"
        for dirpath, dirnames, _files in os.walk(base):
            dirnames.sort()
            if "_manifests" not in dirnames:
                # Only `_`-prefixed directories are Distribution's own; the rest are names.
                dirnames[:] = [d for d in dirnames if not d.startswith("_")]
                continue
            name = Path(dirpath).relative_to(base).as_posix()
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
            repo = self._repository(name, Path(dirpath) / "_manifests")
            uploads = _sorted_dirs(Path(dirpath) / "_uploads")
            if uploads:
                repo.skipped.append(Skipped(name, f"{len(uploads)} unfinished upload(s)"))
            yield repo

    def _repository(self, name: str, manifests: Path) -> DistributionRepository:
        repo = DistributionRepository(name)
        try:
            validate_name(name)
        except RegistryError:
            repo.skipped.append(Skipped(name, "not a valid repository name"))
            return repo
        revisions = manifests / "revisions"
        for algorithm_dir in _sorted_dirs(revisions):
            for revision in _sorted_dirs(algorithm_dir):
                where = f"{name}@{algorithm_dir.name}:{revision.name}"
                digest = _read_link(revision / "link")
                if digest is None:
                    repo.skipped.append(Skipped(where, "manifest deleted (no revision link)"))
                elif digest.hex != revision.name or digest.algorithm != algorithm_dir.name:
                    repo.skipped.append(Skipped(where, f"revision link names {digest}"))
                else:
                    repo.revisions.append(digest)
        live = set(repo.revisions)
        for tag_dir in _sorted_dirs(manifests / "tags"):
            where = f"{name}:{tag_dir.name}"
            if not is_valid_tag(tag_dir.name):
                repo.skipped.append(Skipped(where, "not a valid tag"))
                continue
            digest = _read_link(tag_dir / "current" / "link")
            if digest is None:
                repo.skipped.append(Skipped(where, "tag deleted (no current link)"))
            elif digest not in live:
                repo.skipped.append(Skipped(where, f"tag points at deleted manifest {digest}"))
            else:
                repo.tags[tag_dir.name] = digest
        return repo


def _find_v2(root: Path) -> Path:
    for candidate in (root, root / "v2", root / "registry" / "v2", root / "docker/registry/v2"):
        if (candidate / "repositories").is_dir() and (candidate / "blobs").is_dir():
            return candidate
    raise BundleError(
        f"{root}: not a Distribution store (no docker/registry/v2 with repositories and blobs)"
    )


def _sorted_dirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_link(path: Path) -> Digest | None:
    try:
        text = path.read_text(errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return Digest.parse(text)
    except RegistryError:
        return None
