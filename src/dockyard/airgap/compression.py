"""Compression of bundle files: detect gzip and zstd by their magic bytes, read and write.

Detection never trusts the file name: K3s takes `.tar`, `.tar.gz` and `.tar.zst` files in
either image format, and operators rename files.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from typing import IO, TYPE_CHECKING, BinaryIO, Literal, cast

import zstandard

if TYPE_CHECKING:
    from hashlib import _Hash

Compression = Literal["none", "gzip", "zstd"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def detect(head: bytes) -> Compression:
    """The compression of data that starts with `head` (at least four bytes to be sure)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def open_decompressed(raw: BinaryIO) -> tuple[BinaryIO, Compression]:
    """A reader of the decompressed bytes of a seekable file, and what it was compressed with.

    A truncated gzip stream raises EOFError and a damaged one BadGzipFile or zlib.error.
    python-zstandard ends a truncated zstd stream silently; the tar reader and the digest
    checks after it then see the missing data.
    """
    head = raw.read(4)
    raw.seek(0)
    kind = detect(head)
    if kind == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")), kind
    if kind == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return cast(BinaryIO, reader), kind
    return raw, kind


def zstd_writer(raw: BinaryIO) -> BinaryIO:
    """A writer that zstd-compresses into `raw` (with content checksums); close it to finish."""
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True, threads=-1)
    return cast(BinaryIO, compressor.stream_writer(cast(IO[bytes], raw), closefd=False))


class DiffDigester:
    """The sha256 of a layer's uncompressed content (its diff ID), fed the stored bytes.

    `docker save` layers are plain tars, so their diff ID is the digest of the bytes; a few
    tools write gzip or zstd layers instead, which are decompressed here chunk by chunk.
    With `hash_plain=False` plain data is not hashed again (the caller hashes the bytes
    anyway) and `hexdigest` is then only meaningful for compressed data.
    """

    def __init__(self, hash_plain: bool = True) -> None:
        self._hash_plain = hash_plain
        self._hasher: _Hash = hashlib.sha256()
        self._kind: Compression | None = None
        self._head = b""
        self._gzip: zlib._Decompress | None = None
        self._zstd: zstandard.ZstdDecompressionWriter | None = None

    @property
    def compression(self) -> Compression:
        return self._kind or detect(self._head)

    def update(self, data: bytes) -> None:
        if self._kind is None:
            self._head += data
            if len(self._head) < 4:
                return
            data, self._head = self._head, b""
            self._kind = detect(data)
            if self._kind == "gzip":
                self._gzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif self._kind == "zstd":
                # A writer hands the output on in bounded pieces (a decompressobj would not).
                sink = cast(IO[bytes], _HashSink(self._hasher))
                self._zstd = zstandard.ZstdDecompressor().stream_writer(sink, write_size=1 << 17)
        if self._gzip is not None:
            self._gunzip(data)
        elif self._zstd is not None:
            self._zstd.write(data)
        elif self._hash_plain:
            self._hasher.update(data)

    def _gunzip(self, data: bytes) -> None:
        assert self._gzip is not None
        while data:
            # Bounded output per call: a layer of zeros expands enormously.
            chunk = self._gzip.decompress(data, 1 << 20)
            self._hasher.update(chunk)
            data = self._gzip.unconsumed_tail
            if self._gzip.eof:
                # pigz and friends write several gzip members one after another.
                data = self._gzip.unused_data
                self._gzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def hexdigest(self) -> str:
        if self._kind is None:
            self._hasher.update(self._head)
            self._head = b""
            self._kind = "none"
        return self._hasher.hexdigest()


class _HashSink:
    """A file-like target that only hashes what is written to it."""

    def __init__(self, hasher: _Hash) -> None:
        self._hasher = hasher

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        return len(data)
