"""Unit tests for dockyard.oci.digest: parsing, computing and hashing content digests."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import DigestInvalidError
from dockyard.oci.digest import ALGORITHMS, Digest, is_digest_like, new_hasher

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = (
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)
# What this registry supports: the image spec's registered algorithms, lowercase hex only.
SUPPORTED = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")

algorithms = st.sampled_from(sorted(ALGORITHMS))


# -- parse: accepted forms ------------------------------------------------------------


def test_parse_sha256() -> None:
    digest = Digest.parse(f"sha256:{EMPTY_SHA256}")
    assert digest.algorithm == "sha256"
    assert digest.hex == EMPTY_SHA256
    assert str(digest) == f"sha256:{EMPTY_SHA256}"


def test_parse_sha512() -> None:
    digest = Digest.parse(f"sha512:{EMPTY_SHA512}")
    assert digest.algorithm == "sha512"
    assert digest.hex == EMPTY_SHA512
    assert str(digest) == f"sha512:{EMPTY_SHA512}"


def test_algorithm_table_matches_the_image_spec() -> None:
    assert ALGORITHMS == {"sha256": 64, "sha512": 128}


def test_digests_are_values() -> None:
    a = Digest.parse(f"sha256:{EMPTY_SHA256}")
    b = Digest.parse(f"sha256:{EMPTY_SHA256}")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Digest.parse(f"sha512:{EMPTY_SHA512}")


def test_digest_is_frozen() -> None:
    digest = Digest.parse(f"sha256:{EMPTY_SHA256}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        digest.hex = "0" * 64  # type: ignore[misc]


# -- parse: rejected forms ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("sha256", id="no-colon"),
        pytest.param("sha256:", id="no-encoded"),
        pytest.param(f":{EMPTY_SHA256}", id="no-algorithm"),
        pytest.param(EMPTY_SHA256, id="bare-hex"),
        pytest.param(f"sha256:{EMPTY_SHA256[:-1]}", id="63-hex"),
        pytest.param(f"sha256:{EMPTY_SHA256}0", id="65-hex"),
        pytest.param(f"sha256:{EMPTY_SHA256.upper()}", id="uppercase-hex"),
        pytest.param(f"SHA256:{EMPTY_SHA256}", id="uppercase-algorithm"),
        pytest.param(f"sha256:{'g' * 64}", id="non-hex"),
        pytest.param(f"sha256:{EMPTY_SHA256[:-1]}=", id="base64-padding-char"),
        pytest.param(f"sha256:{EMPTY_SHA512}", id="sha256-with-sha512-length"),
        pytest.param(f"sha512:{EMPTY_SHA256}", id="sha512-with-sha256-length"),
        pytest.param(f"sha256: {EMPTY_SHA256}", id="space-after-colon"),
        pytest.param(f" sha256:{EMPTY_SHA256}", id="leading-space"),
        pytest.param(f"sha256:{EMPTY_SHA256} ", id="trailing-space"),
        pytest.param(f"sha256::{EMPTY_SHA256}", id="double-colon"),
        pytest.param(f"sha256:{EMPTY_SHA256}:{EMPTY_SHA256}", id="two-encodings"),
        pytest.param(f"sha-:{EMPTY_SHA256}", id="dangling-separator"),
        pytest.param(f"sha256:{EMPTY_SHA256}/..", id="path-suffix"),
        pytest.param("md5:d41d8cd98f00b204e9800998ecf8427e", id="md5"),
        pytest.param(f"sha384:{'a' * 96}", id="sha384"),
        pytest.param(f"sha256+b64u:{'A' * 43}", id="registered-grammar-unsupported"),
        pytest.param(f"sha256:{'a' * 300}", id="very-long"),
    ],
)
def test_parse_rejects(value: str) -> None:
    with pytest.raises(DigestInvalidError):
        Digest.parse(value)


def test_parse_names_an_unsupported_algorithm() -> None:
    with pytest.raises(DigestInvalidError) as info:
        Digest.parse("md5:d41d8cd98f00b204e9800998ecf8427e")
    assert "md5" in info.value.message


def test_parse_error_is_the_spec_code() -> None:
    with pytest.raises(DigestInvalidError) as info:
        Digest.parse("nope")
    assert info.value.code == "DIGEST_INVALID"
    assert info.value.status == 400
    assert info.value.to_dict()["code"] == "DIGEST_INVALID"


def test_parse_error_detail_is_bounded() -> None:
    with pytest.raises(DigestInvalidError) as info:
        Digest.parse("x" * 100_000)
    assert isinstance(info.value.detail, dict)
    assert len(info.value.detail["digest"]) <= 300


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\t", "\x00"])
def test_parse_rejects_trailing_control_characters(suffix: str) -> None:
    with pytest.raises(DigestInvalidError):
        Digest.parse(f"sha256:{EMPTY_SHA256}{suffix}")


def test_parse_rejects_63_hex_plus_newline() -> None:
    # 63 hex digits and a newline is 64 characters: only a full-string match rejects it.
    value = f"sha256:{EMPTY_SHA256[:-1]}\n"
    with pytest.raises(DigestInvalidError):
        Digest.parse(value)


def test_parse_rejects_127_hex_plus_newline_for_sha512() -> None:
    value = f"sha512:{EMPTY_SHA512[:-1]}\n"
    with pytest.raises(DigestInvalidError):
        Digest.parse(value)


# -- computing digests ----------------------------------------------------------------


def test_of_empty_bytes() -> None:
    assert str(Digest.of(b"")) == f"sha256:{EMPTY_SHA256}"
    assert str(Digest.of(b"", "sha512")) == f"sha512:{EMPTY_SHA512}"


def test_of_defaults_to_sha256() -> None:
    assert Digest.of(b"hello").algorithm == "sha256"
    assert Digest.of(b"hello").hex == hashlib.sha256(b"hello").hexdigest()


def test_from_hasher() -> None:
    hasher = hashlib.sha512()
    hasher.update(b"abc")
    hasher.update(b"def")
    assert Digest.from_hasher(hasher) == Digest.of(b"abcdef", "sha512")


def test_hasher_is_fresh_and_matches_algorithm() -> None:
    digest = Digest.of(b"content", "sha512")
    hasher = digest.hasher()
    assert hasher.name == "sha512"
    hasher.update(b"content")
    assert Digest.from_hasher(hasher) == digest
    # Every call gives an independent object.
    assert digest.hasher() is not digest.hasher()
    assert digest.hasher().hexdigest() == hashlib.sha512().hexdigest()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_new_hasher_supported(algorithm: str) -> None:
    hasher = new_hasher(algorithm)
    assert hasher.name == algorithm
    assert len(hasher.hexdigest()) == ALGORITHMS[algorithm]


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha384", "SHA256", "", "blake3"])
def test_new_hasher_unsupported(algorithm: str) -> None:
    with pytest.raises(DigestInvalidError):
        new_hasher(algorithm)


# -- is_digest_like -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"sha256:{EMPTY_SHA256}", True),
        ("sha256:short", True),  # meant as a digest, even if an invalid one
        ("md5:abc", True),
        ("latest", False),
        ("v1.2.3", False),
        ("_", False),
        ("", False),
    ],
)
def test_is_digest_like(reference: str, expected: bool) -> None:
    assert is_digest_like(reference) is expected


# -- properties -----------------------------------------------------------------------


@given(algorithms, st.binary(max_size=512))
def test_of_then_parse_round_trips(algorithm: str, data: bytes) -> None:
    digest = Digest.of(data, algorithm)
    assert digest.hex == hashlib.new(algorithm, data).hexdigest()
    parsed = Digest.parse(str(digest))
    assert parsed == digest
    assert str(parsed) == str(digest)


@given(st.data())
def test_parse_accepts_every_well_formed_digest(data: st.DataObject) -> None:
    algorithm = data.draw(algorithms)
    encoded = data.draw(st.from_regex(rf"[a-f0-9]{{{ALGORITHMS[algorithm]}}}", fullmatch=True))
    value = f"{algorithm}:{encoded}"
    digest = Digest.parse(value)
    assert (digest.algorithm, digest.hex) == (algorithm, encoded)
    assert str(digest) == value


@st.composite
def near_digests(draw: st.DrawFn) -> str:
    """Strings close to valid digests: wrong lengths, odd characters, junk around them."""
    algorithm = draw(st.sampled_from([*sorted(ALGORITHMS), "md5", "SHA256", "sha-256", ""]))
    length = ALGORITHMS.get(algorithm, 64) + draw(st.integers(-2, 2))
    encoded = draw(st.text(alphabet="0123456789abcdefABG=_-", min_size=length, max_size=length))
    separator = draw(st.sampled_from([":", ":", ":", "", "::", "="]))
    junk = st.text(alphabet=" \t\n\r\x00:/a", max_size=2)
    return draw(junk) + algorithm + separator + encoded + draw(junk)


@given(st.one_of(near_digests(), st.text(max_size=300)))
def test_parse_accepts_exactly_the_supported_grammar(value: str) -> None:
    try:
        digest = Digest.parse(value)
    except DigestInvalidError:
        assert SUPPORTED.fullmatch(value) is None
    else:
        assert SUPPORTED.fullmatch(value) is not None
        assert str(digest) == value


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("delta", [-1, 0, 1])
@pytest.mark.parametrize("suffix", ["", "\n", "\r", " ", "\t", "0", "g", ":"])
def test_parse_enforces_exact_length_whatever_follows(
    algorithm: str, delta: int, suffix: str
) -> None:
    # Every combination at the length boundary: one hex digit short, exact, one too many,
    # then one trailing character (or none).
    full = hashlib.new(algorithm, b"boundary").hexdigest() * 2
    encoded = full[: ALGORITHMS[algorithm] + delta]
    value = f"{algorithm}:{encoded}{suffix}"
    accepted = SUPPORTED.fullmatch(value) is not None
    if accepted:
        assert str(Digest.parse(value)) == value
    else:
        with pytest.raises(DigestInvalidError):
            Digest.parse(value)
