"""`Range` (blob downloads) and `Content-Range` (chunk uploads) headers."""

from __future__ import annotations

import re

from dockyard.errors import BlobUploadInvalidError, RangeNotSatisfiableError

_BYTES_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
# The spec's form is `<start>-<end>`; Docker clients have sent `bytes <start>-<end>` too.
_CONTENT_RANGE = re.compile(r"^\s*(?:bytes[ =])?\s*(\d{1,19})-(\d{1,19})(?:/(?:\d+|\*))?\s*$")


class UnsatisfiableRange(Exception):
    """A syntactically valid Range that selects nothing in this blob (a 416)."""


def _position(digits: str) -> int:
    """A byte position; past 19 digits it is beyond any blob (and int() refuses 4300+)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 19 else 2**63


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end-inclusive) a `Range` header selects, or None for the whole blob.

    Headers this server does not handle (other units, several ranges, garbage) are
    ignored, as RFC 9110 allows: the client then gets the whole blob with a 200.
    """
    if header is None:
        return None
    match = _BYTES_RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise UnsatisfiableRange
        return max(size - suffix, 0), size - 1
    start = _position(first)
    end = _position(last) if last else size - 1
    if last and end < start:
        return None  # invalid syntax per RFC 9110: ignore the header
    if start >= size:
        raise UnsatisfiableRange
    return start, min(end, size - 1)


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """parse_range for a blob response: a range that selects nothing is the spec's 416,
    with the `Content-Range: bytes */<size>` RFC 9110 asks for."""
    try:
        return parse_range(header, size)
    except UnsatisfiableRange:
        raise RangeNotSatisfiableError(
            f"range not satisfiable for a blob of {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        ) from None


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """(start, end-inclusive) of an upload chunk; BLOB_UPLOAD_INVALID if malformed."""
    if header is None or not header.strip():
        return None
    match = _CONTENT_RANGE.match(header)
    if match is None:
        raise BlobUploadInvalidError(
            "invalid Content-Range: expected <start>-<end>", detail={"Content-Range": header[:100]}
        )
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise BlobUploadInvalidError(
            "invalid Content-Range: end before start", detail={"Content-Range": header[:100]}
        )
    return start, end
