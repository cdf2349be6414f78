"""Writing a bundle archive: a tar stream (optionally zstd-compressed) into a temporary file.

Entries are written as they come, blobs streamed from their source with their digest
checked on the way. The archive appears under its final name only when it is complete;
a failed export removes the temporary file and leaves no half-written bundle behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from zstandard import ZstdError

from dockyard.airgap.compression import zstd_writer
from dockyard.airgap.entries import Readable
from dockyard.airgap.errors import BundleError
from dockyard.oci.digest import Digest


class TarBundleWriter:
    """A tar archive of a bundle, written to `<dir>/.<name>.partial` then renamed."""

    def __init__(self, path: Path, zstd: bool = False) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.partial")
        self._raw: BinaryIO = self._tmp.open("wb")
        self._compressed = zstd_writer(self._raw) if zstd else None
        self._tar = tarfile.open(  # noqa: SIM115 (closed by finish or abort)
            fileobj=self._compressed or self._raw, mode="w|", format=tarfile.PAX_FORMAT
        )
        self._names: set[str] = set()

    def _info(self, name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o755 if directory else 0o644
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mtime = 0  # the same images give the same archive
        return info

    def add_directory(self, name: str) -> None:
        if name not in self._names:
            self._names.add(name)
            self._tar.addfile(self._info(name, 0, directory=True))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._names.add(name)
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def has(self, name: str) -> bool:
        return name in self._names

    def add_stream(
        self,
        name: str,
        size: int,
        reader: Readable,
        expected: Digest,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy exactly `size` bytes from `reader`, refusing them unless they hash to `expected`."""
        hashing = _HashingReader(reader, expected, progress)
        try:
            self._tar.addfile(self._info(name, size), hashing)
        except OSError as exc:
            raise BundleError(f"{expected}: the source ended early ({exc})") from None
        actual = Digest.from_hasher(hashing.hasher)
        if actual != expected:
            raise BundleError(f"{expected}: the source sent content hashing to {actual}")
        self._names.add(name)

    def finish(self) -> None:
        """Close the archive, flush it to disk and give it its final name."""
        self._tar.close()
        if self._compressed is not None:
            self._compressed.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file."""
        for closer in (self._tar.close, getattr(self._compressed, "close", None), self._raw.close):
            if closer is not None:
                # Closing after a failure may fail again; the file goes either way.
                with contextlib.suppress(OSError, ValueError, tarfile.TarError, ZstdError):
                    closer()
        self._tmp.unlink(missing_ok=True)


class _HashingReader:
    def __init__(
        self, reader: Readable, expected: Digest, progress: Callable[[int], None] | None
    ) -> None:
        self._reader = reader
        self.hasher = expected.hasher()
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self.hasher.update(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data
