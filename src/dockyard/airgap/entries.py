"""The files of a bundle, one at a time: from a directory or a (compressed) tar archive.

A compressed archive can only be read front to back, once: callers get every entry in
archive order and must consume it (or leave it) before asking for the next. Reading and
decompression errors become a BundleError that says the bundle is damaged or truncated.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from dockyard.airgap.compression import Compression, open_decompressed
from dockyard.airgap.errors import BundleError

# What a damaged or cut-off archive raises while it is being read.
READ_ERRORS = (
    tarfile.TarError,
    EOFError,
    gzip.BadGzipFile,
    zlib.error,
    zstandard.ZstdError,
    OSError,
)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes (all that is left when negative); b"" at the end."""


@dataclass
class Entry:
    """One regular file (or symbolic link) of a bundle."""

    name: str  # normalised relative path: "blobs/sha256/ab12...", "manifest.json"
    size: int
    reader: Readable | None  # None for a symbolic link
    link_target: str | None = None  # normalised path a symbolic link points at


def normalise(name: str) -> str | None:
    """`./blobs//sha256/x` -> `blobs/sha256/x`; None for paths escaping the bundle."""
    path = posixpath.normpath(name.lstrip("/"))
    if path in (".", "") or path.startswith("../") or path == "..":
        return None
    return path


class BundleSource:
    """A bundle on disk: an OCI layout or `docker save` directory, or a tar archive of one."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise BundleError(f"{path}: no such file or directory")
        self.path = path
        self.compression: Compression = "none"
        self.consumed = 0  # bytes of the file(s) read so far, for progress

    @property
    def total(self) -> int:
        """Bytes to read in all: the archive's size, or the sum of a directory's files."""
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.path.stat().st_size

    def entries(self) -> Iterator[Entry]:
        """Every regular file and symbolic link, in archive (or sorted directory) order."""
        try:
            if self.path.is_dir():
                yield from self._directory_entries()
            else:
                yield from self._archive_entries()
        except READ_ERRORS as exc:
            raise BundleError(
                f"{self.path}: cannot read the bundle (damaged or truncated?): {_describe(exc)}"
            ) from None

    def _directory_entries(self) -> Iterator[Entry]:
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            for filename in sorted(filenames):
                full = Path(dirpath, filename)
                name = full.relative_to(self.path).as_posix()
                if full.is_symlink():
                    target = normalise(posixpath.join(posixpath.dirname(name), os.readlink(full)))
                    yield Entry(name, 0, None, target)
                    continue
                if not full.is_file():
                    continue
                with full.open("rb") as reader:
                    size = os.fstat(reader.fileno()).st_size
                    yield Entry(name, size, _GuardedReader(reader, self.path))
                self.consumed += size

    def _archive_entries(self) -> Iterator[Entry]:
        with self.path.open("rb") as raw:
            stream, self.compression = open_decompressed(raw)
            counted = _CountingReader(stream if self.compression != "none" else raw, self, raw)
            # Plain archives are seekable: entries left unread are skipped without reading.
            mode = "r:" if self.compression == "none" else "r|"
            with tarfile.open(fileobj=counted, mode=mode) as archive:  # type: ignore[call-overload]
                for member in archive:
                    name = normalise(member.name)
                    if name is None:
                        continue
                    if member.issym() or member.islnk():
                        base = posixpath.dirname(name) if member.issym() else ""
                        target = normalise(posixpath.join(base, member.linkname))
                        yield Entry(name, 0, None, target)
                    elif member.isfile():
                        reader = archive.extractfile(member)
                        if reader is None:
                            continue
                        with contextlib.closing(reader):
                            yield Entry(name, member.size, _GuardedReader(reader, self.path))


class _GuardedReader:
    """An entry's content; read errors name the bundle and say it is damaged."""

    def __init__(self, reader: BinaryIO | tarfile.ExFileObject, bundle: Path) -> None:
        self._reader = reader
        self._bundle = bundle

    def read(self, size: int = -1) -> bytes:
        try:
            return self._reader.read(size)
        except READ_ERRORS as exc:
            raise BundleError(
                f"{self._bundle}: cannot read the bundle (damaged or truncated?): {_describe(exc)}"
            ) from None


class _CountingReader:
    """Passes reads through and reports how far into the raw file they have got."""

    def __init__(self, stream: BinaryIO, source: BundleSource, raw: BinaryIO) -> None:
        self._stream = stream
        self._source = source
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._source.consumed = self._raw.tell()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError):
        return f"compressed data ends early ({text})"
    return text
