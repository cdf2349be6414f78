"""Unit tests for dockyard.api.ranges: `Range` (RFC 9110) and upload `Content-Range`."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dockyard.api.ranges import UnsatisfiableRange, parse_content_range, parse_range
from dockyard.errors import BlobUploadInvalidError

SIZE = 1000

# -- parse_range: byte ranges on a blob of SIZE bytes ----------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-199", (100, 199)),
        ("bytes=0-999", (0, 999)),
        ("bytes=999-999", (999, 999)),
        # The last position is clamped to the end of the blob.
        ("bytes=0-1000", (0, 999)),
        ("bytes=500-99999999999999999999999", (500, 999)),
        # Open-ended: from a position to the end.
        ("bytes=0-", (0, 999)),
        ("bytes=990-", (990, 999)),
        ("bytes=999-", (999, 999)),
        # Suffix: the last N bytes.
        ("bytes=-1", (999, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-1000", (0, 999)),
        ("bytes=-5000", (0, 999)),
        # Whitespace the server tolerates.
        (" bytes = 10 - 20 ", (10, 20)),
        ("bytes=00010-00020", (10, 20)),
    ],
)
def test_satisfiable_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("bytes=1000-1000", id="start-at-size"),
        pytest.param("bytes=1000-", id="open-ended-at-size"),
        pytest.param("bytes=5000-", id="open-ended-past-end"),
        pytest.param("bytes=5000-6000", id="past-end"),
        pytest.param("bytes=-0", id="empty-suffix"),
    ],
)
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, SIZE)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param("bytes=", id="no-spec"),
        pytest.param("bytes=-", id="dash-only"),
        pytest.param("bytes=20-10", id="last-before-first"),
        pytest.param("bytes=0-1,5-9", id="multiple-ranges"),
        pytest.param("bytes=0-1, 5-", id="multiple-ranges-open"),
        pytest.param("items=0-10", id="other-unit"),
        pytest.param("bytes 0-10", id="content-range-syntax"),
        pytest.param("0-10", id="no-unit"),
        pytest.param("bytes=a-b", id="letters"),
        pytest.param("bytes=-10-20", id="negative-start"),
        pytest.param("bytes=1.5-2", id="fraction"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_ignored_headers_select_the_whole_blob(header: str) -> None:
    assert parse_range(header, SIZE) is None


def test_no_header() -> None:
    assert parse_range(None, SIZE) is None
    assert parse_range(None, 0) is None


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-100"])
def test_an_empty_blob_satisfies_no_range(header: str) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, 0)


def test_an_empty_blob_ignores_invalid_ranges() -> None:
    assert parse_range("bytes=5-1", 0) is None
    assert parse_range("bytes=-", 0) is None


def test_one_byte_blob() -> None:
    assert parse_range("bytes=0-", 1) == (0, 0)
    assert parse_range("bytes=0-100", 1) == (0, 0)
    assert parse_range("bytes=-100", 1) == (0, 0)
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=1-", 1)


# -- parse_range: properties ----------------------------------------------------------

sizes = st.integers(min_value=0, max_value=10**12)
positions = st.integers(min_value=0, max_value=10**13)
maybe_number = st.one_of(st.just(""), positions.map(str))
range_headers = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", maybe_number, maybe_number),
    st.builds(
        lambda pad1, a, pad2, b, pad3: f"{pad1}bytes{pad2}={a}-{b}{pad3}",
        st.sampled_from(["", " ", "\t"]),
        maybe_number,
        st.sampled_from(["", " "]),
        maybe_number,
        st.sampled_from(["", " ", "\n", ",0-1"]),
    ),
    st.text(alphabet="bytes=0123456789-, \t", max_size=30),
    st.text(max_size=30),
)


@given(range_headers, sizes)
def test_parse_range_never_selects_out_of_bounds(header: str, size: int) -> None:
    try:
        selected = parse_range(header, size)
    except UnsatisfiableRange:
        return
    if selected is not None:
        start, end = selected
        assert 0 <= start <= end < size


@given(sizes, positions, positions)
def test_closed_ranges_select_exactly_the_overlap(size: int, first: int, last: int) -> None:
    assume(first <= last)
    header = f"bytes={first}-{last}"
    if first >= size:
        with pytest.raises(UnsatisfiableRange):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == (first, min(last, size - 1))


@given(sizes, positions)
def test_open_ranges_select_to_the_end(size: int, first: int) -> None:
    header = f"bytes={first}-"
    if first >= size:
        with pytest.raises(UnsatisfiableRange):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == (first, size - 1)


@given(sizes, positions)
def test_suffix_ranges_select_the_last_bytes(size: int, suffix: int) -> None:
    header = f"bytes=-{suffix}"
    if suffix == 0 or size == 0:
        with pytest.raises(UnsatisfiableRange):
            parse_range(header, size)
    else:
        start, end = parse_range(header, size) or (-1, -1)
        assert end == size - 1
        assert end - start + 1 == min(suffix, size)


@given(sizes, positions, positions)
def test_backwards_ranges_are_ignored(size: int, first: int, last: int) -> None:
    assume(last < first)
    assert parse_range(f"bytes={first}-{last}", size) is None


# -- parse_content_range --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0-0", (0, 0)),
        ("0-99", (0, 99)),
        ("100-199", (100, 199)),
        (" 5-10 ", (5, 10)),
        ("bytes 0-99", (0, 99)),
        ("bytes=0-99", (0, 99)),
        ("bytes 0-99/100", (0, 99)),
        ("0-99/*", (0, 99)),
        ("007-009", (7, 9)),
        ("0-9999999999999999999", (0, 9999999999999999999)),
    ],
)
def test_content_range(header: str, expected: tuple[int, int]) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize("header", [None, "", "   ", "\t"])
def test_absent_content_range(header: str | None) -> None:
    assert parse_content_range(header) is None


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("abc", id="garbage"),
        pytest.param("5", id="single-number"),
        pytest.param("-5", id="no-start"),
        pytest.param("5-", id="no-end"),
        pytest.param("0 - 99", id="spaces-around-dash"),
        pytest.param("0-99/", id="empty-total"),
        pytest.param("0-99/abc", id="bad-total"),
        pytest.param("bytes 0-", id="unit-no-end"),
        pytest.param("items 0-99", id="other-unit"),
        pytest.param("0-1,2-3", id="several"),
        pytest.param("0x0-0x10", id="hex"),
        pytest.param("0-10000000000000000000", id="20-digits"),
        pytest.param("1-0", id="end-before-start"),
        pytest.param("100-99", id="end-one-before-start"),
    ],
)
def test_invalid_content_range(header: str) -> None:
    with pytest.raises(BlobUploadInvalidError) as info:
        parse_content_range(header)
    assert info.value.code == "BLOB_UPLOAD_INVALID"
    assert info.value.status == 400
    assert isinstance(info.value.detail, dict)
    assert info.value.detail["Content-Range"] == header[:100]


def test_content_range_error_detail_is_bounded() -> None:
    with pytest.raises(BlobUploadInvalidError) as info:
        parse_content_range("x" * 10_000)
    assert isinstance(info.value.detail, dict)
    assert len(info.value.detail["Content-Range"]) <= 100


# The spec's form for chunk ranges.
SPEC_CONTENT_RANGE = re.compile(r"[0-9]+-[0-9]+")


@given(st.integers(0, 10**18), st.integers(0, 10**18))
def test_spec_form_round_trips(start: int, end: int) -> None:
    header = f"{start}-{end}"
    assert SPEC_CONTENT_RANGE.fullmatch(header)
    if start <= end:
        assert parse_content_range(header) == (start, end)
    else:
        with pytest.raises(BlobUploadInvalidError):
            parse_content_range(header)


@given(st.one_of(st.text(max_size=40), st.text(alphabet="bytes =0123456789-/*", max_size=40)))
def test_content_range_returns_ordered_pair_or_raises_upload_invalid(header: str) -> None:
    try:
        parsed = parse_content_range(header)
    except BlobUploadInvalidError:
        return
    if parsed is None:
        assert not header.strip()
    else:
        start, end = parsed
        assert 0 <= start <= end
