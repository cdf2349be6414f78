"""Property-based fuzzing of the parsers that read what clients send.

Each test throws generated input (well-formed, nearly well-formed and arbitrary) at one
parser and lets fuzz/checks.py judge the result: only the parser's documented error, and
anything accepted is safe to use (names and digests never reach outside the storage root,
ranges stay inside the blob, manifests only hold valid descriptors). fuzz/fuzz_*.py run the
same checks under atheris for as long as one likes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fuzz import checks
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dockyard.api.ranges import UnsatisfiableRange, parse_range
from dockyard.auth import htpasswd
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import ALGORITHMS, Digest
from dockyard.oci.names import validate_name

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- building blocks ---------------------------------------------------------------------

COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
valid_names = st.from_regex(rf"{COMPONENT}(?:/{COMPONENT}){{0,4}}", fullmatch=True).filter(
    lambda n: len(n) <= 255
)
# Text made of the characters that matter to names and paths, hostile ones included.
name_ish = st.text(alphabet="ab09._-/:@%\\\0\n A\u00e9\u2215\uff0e", max_size=40)
names = st.one_of(valid_names, name_ish, st.text(max_size=300))

valid_tags = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", fullmatch=True)
tags = st.one_of(valid_tags, st.text(alphabet="aZ09._-:/@ \0", max_size=140), st.text())


def _hex(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=length, max_size=length)


valid_digests = st.sampled_from(sorted(ALGORITHMS)).flatmap(
    lambda algorithm: _hex(ALGORITHMS[algorithm]).map(lambda h: f"{algorithm}:{h}")
)
digests = st.one_of(
    valid_digests,
    # Right shape, wrong detail: case, length, algorithm, separators, path characters.
    st.builds(
        lambda algorithm, encoded: f"{algorithm}:{encoded}",
        st.sampled_from(["sha256", "sha512", "SHA256", "md5", "sha256+b64", "", "..", "sha256/"]),
        st.text(alphabet="0123456789abcdefABCDEF=_-./\0", max_size=140),
    ),
    st.from_regex(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", fullmatch=True),
    st.text(max_size=300),
)

numbers = st.one_of(
    st.integers(min_value=0, max_value=10**25).map(str),
    st.integers(min_value=19, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=30).map(lambda n: "0" * n + "1"),
    st.just(""),
)


# -- names, tags, references, digests ---------------------------------------------------


@FAST
@given(names)
@example("a/../b")
@example("..")
@example("a" * 256)
@example("a/" * 127 + "a")
@example("a\0")
@example("a\n")
def test_names(text: str) -> None:
    checks.check_name(text)


@FAST
@given(tags)
@example("..")
@example("a" * 129)
@example("latest\n")
def test_tags(text: str) -> None:
    checks.check_tag(text)


registries = st.sampled_from(
    ["", "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/", "ghcr.io/", "a.b:x/"]
)


@FAST
@given(
    st.one_of(
        st.builds(
            lambda registry, name, tag, digest: f"{registry}{name}{tag}{digest}",
            registries,
            names,
            st.one_of(st.just(""), tags.map(lambda t: f":{t}")),
            st.one_of(st.just(""), digests.map(lambda d: f"@{d}")),
        ),
        st.text(max_size=300),
    )
)
@example("nginx")
@example("docker.io/nginx:1.27@sha256:" + "0" * 64)
@example("@")
@example(":")
@example("localhost:5000/a:b:c")
def test_image_references(text: str) -> None:
    checks.check_reference(text)


@FAST
@given(digests)
@example("sha256:" + "0" * 64)
@example("sha256:" + "0" * 63 + "/")
@example("sha256:../../" + "0" * 58)
def test_digests(text: str) -> None:
    checks.check_digest(text)


@FAST
@given(valid_digests)
def test_every_well_formed_digest_parses(text: str) -> None:
    assert str(Digest.parse(text)) == text


# -- Range and Content-Range --------------------------------------------------------------

range_headers = st.one_of(
    st.builds(
        lambda pad, first, last, tail: f"{pad}bytes={first}-{last}{tail}",
        st.sampled_from(["", " ", "\t"]),
        numbers,
        numbers,
        st.sampled_from(["", " ", ",0-1", "\n"]),
    ),
    st.text(alphabet="bytes=0123456789-, */", max_size=60),
    st.text(max_size=100),
)


@FAST
@given(range_headers, st.integers(min_value=0, max_value=2**63))
@example("bytes=" + "9" * 5000 + "-", 10)
@example("bytes=-" + "9" * 5000, 10)
@example("bytes=0-" + "9" * 5000, 10)
def test_range(header: str, size: int) -> None:
    checks.check_range(header, size)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # Beyond 19 digits a position is past the end of any blob: same answer as 19 digits.
        ("bytes=0-" + "9" * 5000, (0, 9)),
        ("bytes=-" + "9" * 5000, (0, 9)),
        ("bytes=3-" + "0" * 30 + "5", (3, 5)),
        ("bytes=" + "0" * 30 + "2-", (2, 9)),
    ],
)
def test_range_with_huge_numbers(header: str, expected: tuple[int, int]) -> None:
    # Regression: int() refuses strings of 4300+ digits, and GET blob answered 500.
    assert parse_range(header, 10) == expected


def test_range_starting_past_any_blob_is_unsatisfiable() -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=" + "9" * 5000 + "-", 10)


@FAST
@given(
    st.one_of(
        st.builds(
            lambda prefix, first, last, total: f"{prefix}{first}-{last}{total}",
            st.sampled_from(["", "bytes ", "bytes=", " "]),
            numbers,
            numbers,
            st.sampled_from(["", "/*", "/10", "/" + "9" * 40, "/-1"]),
        ),
        st.text(alphabet="0123456789-/* bytes=", max_size=60),
        st.text(max_size=100),
    )
)
@example("0-" + "9" * 5000)
@example("٣-٤")
def test_content_range(header: str) -> None:
    checks.check_content_range(header)


# -- manifests ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
media_types = st.sampled_from(
    [
        mt.OCI_MANIFEST,
        mt.OCI_INDEX,
        mt.DOCKER_MANIFEST,
        mt.DOCKER_MANIFEST_LIST,
        mt.DOCKER_SCHEMA1,
        mt.OCTET_STREAM,
        "application/json",
        "",
        "text/html",
    ]
)
descriptor_values = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.one_of(media_types, json_values),
        "digest": st.one_of(digests, json_values),
        "size": st.one_of(st.integers(min_value=-2, max_value=2**64), json_values),
        "urls": st.one_of(st.lists(st.text(max_size=10), max_size=2), json_values),
        "artifactType": st.one_of(st.text(max_size=10), json_values),
        "annotations": st.one_of(
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), json_values
        ),
    },
)
descriptors = st.one_of(descriptor_values, json_values)
manifest_documents = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.just(2), json_values),
        "mediaType": st.one_of(media_types, json_values),
        "config": descriptors,
        "layers": st.one_of(st.lists(descriptors, max_size=3), json_values),
        "manifests": st.one_of(st.lists(descriptors, max_size=3), json_values),
        "subject": descriptors,
        "artifactType": st.one_of(st.text(max_size=10), json_values),
        "annotations": json_values,
    },
)


def _encode(document: Any) -> bytes:
    return json.dumps(document).encode()


@FAST
@given(
    st.one_of(
        manifest_documents.map(_encode),
        json_values.map(_encode),
        st.binary(max_size=200),
        st.integers(min_value=1, max_value=20000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    ),
    st.one_of(st.none(), media_types, st.text(max_size=30)),
)
@example(b'{"schemaVersion": 2, "config": {"size": ' + b"9" * 5000 + b"}}", None)
@example(b'{"schemaVersion": 2, "config": {"size": 1e400}}', None)
@example(b"\xff\xfe{}", None)
def test_manifests(data: bytes, content_type: str | None) -> None:
    checks.check_manifest(data, content_type)


# -- credentials --------------------------------------------------------------------------


@FAST
@given(
    st.one_of(
        st.lists(
            st.builds(
                lambda name, sep, hashed: f"{name}{sep}{hashed}",
                st.text(max_size=10),
                st.sampled_from([":", "", "::", " : "]),
                st.text(max_size=20),
            ),
            max_size=6,
        ).map("\n".join),
        st.text(max_size=200),
    )
)
@example("#a:b\n:c\n a : b \r\nd:e\x85f:g\u2028h:i")
def test_htpasswd(text: str) -> None:
    checks.check_htpasswd(text)


def test_an_htpasswd_file_that_is_not_utf8_still_serves_the_other_users(tmp_path: Path) -> None:
    # Regression: UnicodeDecodeError from every check (a 500 on every authenticated request,
    # a traceback from `dockyard serve` at start).
    path = tmp_path / "htpasswd"
    path.write_bytes(
        "j\xf6rg:$2y$05$x\n".encode("latin-1")
        + f"alice:{htpasswd.hash_password('secret', rounds=4)}\n".encode()
    )
    users = htpasswd.HtpasswdFile(path)
    assert users.verify("alice", "secret")
    assert not users.verify("j\xf6rg", "x")


scope_items = st.builds(
    lambda kind, name, actions: f"{kind}:{name}:{actions}",
    st.sampled_from(["repository", "registry", "", "repository(plugin)", "REPOSITORY"]),
    st.one_of(valid_names, st.sampled_from(["catalog", "a:5000/b", ""]), name_ish),
    st.text(alphabet="pulshdeto,*: ", max_size=20),
)


@FAST
@given(
    st.lists(
        st.one_of(scope_items, st.lists(scope_items, max_size=3).map(" ".join), st.text()),
        max_size=5,
    )
)
@example(["repository:a:b:c:pull,,push", "registry:catalog:*", "::", ":", ""])
def test_token_scopes(scopes: list[str]) -> None:
    checks.check_scopes(scopes)


def test_the_name_grammar_check_agrees_with_the_spec_examples() -> None:
    # The independent grammar in fuzz/checks.py is itself checked against known answers.
    for good in ("a", "a/b", "a.b", "a_b", "a__b", "a---b", "library/nginx", "0"):
        assert checks.grammar_accepts_name(good), good
        validate_name(good)
    for bad in ("", "A", "a/", "/a", "a//b", "a..b", "a___b", "a.-b", "-a", "a-", "..", "é"):
        assert not checks.grammar_accepts_name(bad), bad
