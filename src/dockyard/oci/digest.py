"""Content digests (`algorithm:encoded`) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.errors import DigestInvalidError

if TYPE_CHECKING:
    from hashlib import _Hash

# The algorithms this registry verifies, with the exact length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A verified-syntax digest of a supported algorithm."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse `sha256:<64 hex>` or `sha512:<128 hex>`; DigestInvalidError otherwise."""
        if len(value) > 256 or not _GRAMMAR.fullmatch(value):
            raise DigestInvalidError("invalid digest", detail={"digest": value[:300]})
        algorithm, _, encoded = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestInvalidError(
                f"unsupported digest algorithm {algorithm!r}", detail={"digest": value}
            )
        if len(encoded) != length or not _HEX.fullmatch(encoded):
            raise DigestInvalidError(
                f"invalid {algorithm} digest: expected {length} lowercase hex characters",
                detail={"digest": value},
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of some bytes."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def from_hasher(cls, hasher: _Hash) -> Digest:
        """The digest a finished hashlib object computed."""
        return cls(hasher.name, hasher.hexdigest())

    def hasher(self) -> _Hash:
        """A new hashlib object for this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest_like(reference: str) -> bool:
    """True when a manifest reference is meant as a digest rather than a tag."""
    return ":" in reference


def new_hasher(algorithm: str) -> _Hash:
    """A hashlib object for a supported algorithm; DigestInvalidError otherwise."""
    if algorithm not in ALGORITHMS:
        raise DigestInvalidError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)
