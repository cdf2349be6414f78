"""Unit tests for dockyard.oci.names: repository names and tags against the spec grammar."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import NameInvalidError, TagInvalidError
from dockyard.oci.names import MAX_NAME_LENGTH, is_valid_tag, validate_name, validate_tag

# Verbatim from the distribution spec ("Pulling manifests").
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def spec_accepts_name(name: str) -> bool:
    return SPEC_NAME.fullmatch(name) is not None and len(name) <= MAX_NAME_LENGTH


def spec_accepts_tag(tag: str) -> bool:
    return SPEC_TAG.fullmatch(tag) is not None


# -- repository names -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "ubuntu",
        "library/ubuntu",
        "my-org/my-team/my-app",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "a.b_c__d-e",
        "a/b/c/d/e/f",
        "a1/b2/c3",
        "123/456",
        "foo.bar/baz_qux",
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("Ubuntu", id="uppercase"),
        pytest.param("library/Ubuntu", id="uppercase-component"),
        pytest.param("/a", id="leading-slash"),
        pytest.param("a/", id="trailing-slash"),
        pytest.param("a//b", id="empty-component"),
        pytest.param(".a", id="leading-dot"),
        pytest.param("a.", id="trailing-dot"),
        pytest.param("-a", id="leading-dash"),
        pytest.param("a-", id="trailing-dash"),
        pytest.param("_a", id="leading-underscore"),
        pytest.param("a_", id="trailing-underscore"),
        pytest.param("a..b", id="double-dot"),
        pytest.param("a___b", id="triple-underscore"),
        pytest.param("a.-b", id="dot-dash"),
        pytest.param("a-.b", id="dash-dot"),
        pytest.param("a._b", id="dot-underscore"),
        pytest.param("a/.b", id="component-leading-dot"),
        pytest.param("a/../b", id="dot-dot-component"),
        pytest.param("..", id="dot-dot"),
        pytest.param("a b", id="space"),
        pytest.param("a:b", id="colon"),
        pytest.param("a@b", id="at"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a\x00", id="nul"),
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalidError):
        validate_name(name)


@pytest.mark.parametrize("name", ["foo\n", "library/ubuntu\n", "a/b\n"])
def test_name_with_trailing_newline_is_invalid(name: str) -> None:
    # The spec grammar must match the whole name; "\n" is not in its alphabet.
    with pytest.raises(NameInvalidError):
        validate_name(name)


def test_name_length_limit() -> None:
    longest = "a" * MAX_NAME_LENGTH
    assert validate_name(longest) == longest
    with pytest.raises(NameInvalidError):
        validate_name(longest + "a")
    nested = "/".join(["ab"] * 85)  # 254 characters, many components
    assert validate_name(nested) == nested


def test_name_error_is_the_spec_code_with_bounded_detail() -> None:
    with pytest.raises(NameInvalidError) as info:
        validate_name("X" * 10_000)
    assert info.value.code == "NAME_INVALID"
    assert info.value.status == 400
    assert isinstance(info.value.detail, dict)
    assert len(info.value.detail["name"]) <= 300


def test_adversarial_names_are_rejected_quickly() -> None:
    # Long runs of separators that almost match: a backtracking regex would stall here.
    for name in ["a" + "-" * 250 + "!", "a" + "._" * 120 + "-", "a-" * 127 + "!"]:
        with pytest.raises(NameInvalidError):
            validate_name(name)


# -- tags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1.2.3", "1", "_", "A", "Z9", "a-b_c.D", "_private", "1.0-rc.1", "a" * 128],
)
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("", id="empty"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-v1", id="leading-dash"),
        pytest.param("a" * 129, id="129-chars"),
        pytest.param("a:b", id="colon"),
        pytest.param("sha256:abc", id="digest-like"),
        pytest.param("a/b", id="slash"),
        pytest.param("a b", id="space"),
        pytest.param("a+b", id="plus"),
        pytest.param("a@b", id="at"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a\x00", id="nul"),
    ],
)
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)
    with pytest.raises(TagInvalidError):
        validate_tag(tag)


@pytest.mark.parametrize("tag", ["latest\n", "v1\n", "a" * 128 + "\n"])
def test_tag_with_trailing_newline_is_invalid(tag: str) -> None:
    assert not is_valid_tag(tag)
    with pytest.raises(TagInvalidError):
        validate_tag(tag)


def test_tag_error_is_manifest_invalid_with_bounded_detail() -> None:
    # The spec has no TAG_INVALID code; an invalid tag is reported as MANIFEST_INVALID.
    with pytest.raises(TagInvalidError) as info:
        validate_tag("!" * 10_000)
    assert info.value.code == "MANIFEST_INVALID"
    assert info.value.status == 400
    assert isinstance(info.value.detail, dict)
    assert len(info.value.detail["tag"]) <= 300


# -- properties: the implementation agrees with the spec's expressions ------------------

name_alphabet = "ab09._-/A \n:"
tag_alphabet = "aZ09._-/ \n:+"


@settings(max_examples=1000)
@given(st.text(alphabet=name_alphabet, max_size=40))
def test_names_agree_with_spec_regex_on_near_miss_text(name: str) -> None:
    if spec_accepts_name(name):
        assert validate_name(name) == name
    else:
        with pytest.raises(NameInvalidError):
            validate_name(name)


@given(st.text(max_size=60))
def test_names_agree_with_spec_regex_on_any_text(name: str) -> None:
    if spec_accepts_name(name):
        assert validate_name(name) == name
    else:
        with pytest.raises(NameInvalidError):
            validate_name(name)


@given(st.from_regex(SPEC_NAME, fullmatch=True))
def test_every_spec_name_within_the_length_limit_is_accepted(name: str) -> None:
    if len(name) <= MAX_NAME_LENGTH:
        assert validate_name(name) == name
    else:
        with pytest.raises(NameInvalidError):
            validate_name(name)


@settings(max_examples=1000)
@given(st.text(alphabet=tag_alphabet, max_size=140))
def test_tags_agree_with_spec_regex_on_near_miss_text(tag: str) -> None:
    assert is_valid_tag(tag) is spec_accepts_tag(tag)


@given(st.text(max_size=140))
def test_tags_agree_with_spec_regex_on_any_text(tag: str) -> None:
    assert is_valid_tag(tag) is spec_accepts_tag(tag)


@given(st.from_regex(SPEC_TAG, fullmatch=True))
def test_every_spec_tag_is_accepted(tag: str) -> None:
    assert len(tag) <= 128
    assert is_valid_tag(tag)
    assert validate_tag(tag) == tag
