"""Unit tests for dockyard.oci.manifest and dockyard.oci.mediatypes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import ManifestInvalidError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import Descriptor, Manifest, parse_manifest

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
SBOM = "application/vnd.example.sbom.v1"


def desc(media_type: str, content: bytes = b"x", **extra: Any) -> dict[str, Any]:
    """A descriptor document for some content."""
    return {
        "mediaType": media_type,
        "digest": str(Digest.of(content)),
        "size": len(content),
        **extra,
    }


def oci_manifest(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(OCI_CONFIG, b"{}"),
        "layers": [desc(OCI_LAYER, b"layer-1"), desc(OCI_LAYER, b"layer-2")],
    }
    document.update(fields)
    return {k: v for k, v in document.items() if v is not _DROP}


def oci_index(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            desc(mt.OCI_MANIFEST, b"amd64", platform={"architecture": "amd64", "os": "linux"}),
            desc(mt.OCI_MANIFEST, b"arm64", platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    document.update(fields)
    return {k: v for k, v in document.items() if v is not _DROP}


_DROP: Any = object()  # a field value meaning "leave the field out"


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def parse(document: Any, content_type: str | None = None) -> Manifest:
    return parse_manifest(encode(document), content_type)


def invalid(document: Any, content_type: str | None = None) -> ManifestInvalidError:
    with pytest.raises(ManifestInvalidError) as info:
        parse(document, content_type)
    return info.value


# -- media types ----------------------------------------------------------------------


def test_media_type_sets() -> None:
    assert {mt.OCI_MANIFEST, mt.DOCKER_MANIFEST} == mt.IMAGE_MANIFESTS
    assert {mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST} == mt.INDEXES
    assert mt.MANIFEST_TYPES == mt.IMAGE_MANIFESTS | mt.INDEXES
    assert not mt.IMAGE_MANIFESTS & mt.INDEXES
    assert mt.DOCKER_SCHEMA1 not in mt.MANIFEST_TYPES
    assert mt.DOCKER_SCHEMA1_SIGNED not in mt.MANIFEST_TYPES
    assert mt.OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert mt.OCI_INDEX == "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("application/json;charset=utf-8;q=1", "application/json"),
        ("  Application/VND.OCI.Image.Manifest.v1+JSON  ", mt.OCI_MANIFEST),
        (f"{mt.OCI_INDEX} ;", mt.OCI_INDEX),
        ("", ""),
        (";x=y", ""),
    ],
)
def test_strip_parameters(value: str, expected: str) -> None:
    assert mt.strip_parameters(value) == expected


def test_parse_accept_merges_lines_and_drops_parameters() -> None:
    lines = [
        f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX};q=0.9",
        f"{mt.DOCKER_MANIFEST}",
        f" {mt.DOCKER_MANIFEST_LIST} ; q=0.5 ,*/*;q=0.1",
    ]
    assert mt.parse_accept(lines) == [
        mt.OCI_MANIFEST,
        mt.OCI_INDEX,
        mt.DOCKER_MANIFEST,
        mt.DOCKER_MANIFEST_LIST,
        "*/*",
    ]


@pytest.mark.parametrize("lines", [[], [""], [" , ,"], [";q=1"]])
def test_parse_accept_empty(lines: list[str]) -> None:
    assert mt.parse_accept(lines) == []


def test_parse_accept_takes_any_iterable() -> None:
    assert mt.parse_accept(iter(["A/B", "c/d"])) == ["a/b", "c/d"]


# -- image manifests ------------------------------------------------------------------


def test_oci_image_manifest() -> None:
    document = oci_manifest(annotations={"org.opencontainers.image.created": "2024-01-01"})
    manifest = parse(document, mt.OCI_MANIFEST)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert not manifest.is_index
    assert manifest.config == Descriptor(OCI_CONFIG, Digest.of(b"{}"), 2)
    assert [layer.digest for layer in manifest.layers] == [
        Digest.of(b"layer-1"),
        Digest.of(b"layer-2"),
    ]
    assert all(layer.media_type == OCI_LAYER for layer in manifest.layers)
    assert manifest.manifests == ()
    assert manifest.subject is None
    assert manifest.artifact_type is None
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01"}
    assert manifest.referrer_artifact_type == OCI_CONFIG
    assert manifest.blob_references() == (manifest.config, *manifest.layers)


def test_oci_manifest_without_media_type_is_detected_from_config() -> None:
    manifest = parse(oci_manifest(mediaType=_DROP))
    assert manifest.media_type == mt.OCI_MANIFEST


def test_oci_manifest_layers_may_be_omitted() -> None:
    manifest = parse(oci_manifest(layers=_DROP))
    assert manifest.layers == ()
    assert manifest.blob_references() == (manifest.config,)


def test_docker_schema2_manifest() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, b"cfg"),
        "layers": [desc(DOCKER_LAYER, b"l1")],
    }
    manifest = parse(document, mt.DOCKER_MANIFEST)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert not manifest.is_index
    assert [d.digest for d in manifest.blob_references()] == [
        Digest.of(b"cfg"),
        Digest.of(b"l1"),
    ]


def test_docker_schema2_manifest_requires_layers() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, b"cfg"),
    }
    assert "layers" in invalid(document).message


def test_foreign_layers_are_not_blob_references() -> None:
    foreign = desc(DOCKER_FOREIGN_LAYER, b"windows", urls=["https://example.com/layer"])
    local = desc(DOCKER_LAYER, b"local")
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, b"cfg"),
        "layers": [foreign, local],
    }
    manifest = parse(document)
    assert manifest.layers[0].urls == ("https://example.com/layer",)
    assert [d.digest for d in manifest.blob_references()] == [
        Digest.of(b"cfg"),
        Digest.of(b"local"),
    ]


def test_artifact_manifest_with_subject() -> None:
    subject = desc(mt.OCI_MANIFEST, b"the image")
    document = oci_manifest(
        artifactType=SBOM,
        config=desc(EMPTY_JSON, b"{}"),
        layers=[desc(SBOM, b"sbom", annotations={"org.example.name": "sbom.json"})],
        subject=subject,
        annotations={"org.example.kind": "sbom"},
    )
    manifest = parse(document, mt.OCI_MANIFEST)
    assert manifest.artifact_type == SBOM
    assert manifest.referrer_artifact_type == SBOM
    assert manifest.subject == Descriptor(mt.OCI_MANIFEST, Digest.of(b"the image"), 9)
    assert manifest.layers[0].annotations == {"org.example.name": "sbom.json"}
    assert manifest.annotations == {"org.example.kind": "sbom"}


def test_referrer_artifact_type_falls_back_to_config_media_type() -> None:
    manifest = parse(oci_manifest(config=desc(SBOM, b"{}")))
    assert manifest.artifact_type is None
    assert manifest.referrer_artifact_type == SBOM


def test_descriptor_fields() -> None:
    layer = desc(
        OCI_LAYER,
        b"data",
        urls=["https://a.example/x", "https://b.example/x"],
        artifactType=SBOM,
        annotations={"k": "v"},
    )
    manifest = parse(oci_manifest(layers=[layer]))
    assert manifest.layers == (
        Descriptor(
            OCI_LAYER,
            Digest.of(b"data"),
            4,
            ("https://a.example/x", "https://b.example/x"),
            SBOM,
            {"k": "v"},
        ),
    )


def test_descriptor_sizes_zero_and_huge() -> None:
    zero = {**desc(OCI_LAYER, b""), "size": 0}
    huge = {**desc(OCI_LAYER, b"big"), "size": 2**53}
    manifest = parse(oci_manifest(layers=[zero, huge]))
    assert [layer.size for layer in manifest.layers] == [0, 2**53]


def test_descriptor_sha512_digest() -> None:
    layer = {**desc(OCI_LAYER), "digest": str(Digest.of(b"x", "sha512"))}
    manifest = parse(oci_manifest(layers=[layer]))
    assert manifest.layers[0].digest == Digest.of(b"x", "sha512")


def test_unknown_fields_are_ignored() -> None:
    manifest = parse(oci_manifest(extra={"anything": [1, 2, 3]}))
    assert manifest.media_type == mt.OCI_MANIFEST


# -- indexes --------------------------------------------------------------------------


def test_oci_index() -> None:
    manifest = parse(oci_index(annotations={"a": "b"}), mt.OCI_INDEX)
    assert manifest.media_type == mt.OCI_INDEX
    assert manifest.is_index
    assert manifest.config is None
    assert manifest.layers == ()
    assert [m.digest for m in manifest.manifests] == [Digest.of(b"amd64"), Digest.of(b"arm64")]
    assert manifest.annotations == {"a": "b"}
    assert manifest.blob_references() == ()
    assert manifest.referrer_artifact_type is None


def test_index_entries_carry_their_platform() -> None:
    manifest = parse(oci_index(), mt.OCI_INDEX)
    assert [m.platform for m in manifest.manifests] == [("linux", "amd64"), ("linux", "arm64")]
    # platform is optional in the image spec: an absent or partial one is no platform.
    odd = oci_index(
        manifests=[
            desc(mt.OCI_MANIFEST, b"a"),
            desc(mt.OCI_MANIFEST, b"b", platform={"architecture": "amd64"}),
            desc(mt.OCI_MANIFEST, b"c", platform="linux/amd64"),
        ]
    )
    assert [m.platform for m in parse(odd, mt.OCI_INDEX).manifests] == [None, None, None]


def test_index_without_media_type_is_detected_from_manifests() -> None:
    assert parse(oci_index(mediaType=_DROP)).media_type == mt.OCI_INDEX


def test_empty_index() -> None:
    assert parse(oci_index(manifests=[])).manifests == ()


def test_index_artifact_type_is_its_referrer_type() -> None:
    manifest = parse(oci_index(artifactType=SBOM, subject=desc(mt.OCI_MANIFEST, b"s")))
    assert manifest.referrer_artifact_type == SBOM
    assert manifest.subject is not None


def test_docker_manifest_list() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [desc(mt.DOCKER_MANIFEST, b"m")],
    }
    manifest = parse(document, mt.DOCKER_MANIFEST_LIST)
    assert manifest.is_index
    assert manifest.manifests[0].media_type == mt.DOCKER_MANIFEST


def test_index_requires_manifests() -> None:
    assert "manifests" in invalid(oci_index(manifests=_DROP)).message


def test_image_manifest_requires_config() -> None:
    assert "config" in invalid(oci_manifest(config=_DROP)).message


# -- media type negotiation -----------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "", mt.OCTET_STREAM, "application/json"])
def test_generic_content_types_defer_to_the_document(content_type: str | None) -> None:
    assert parse(oci_index(), content_type).media_type == mt.OCI_INDEX
    assert parse(oci_manifest(), content_type).media_type == mt.OCI_MANIFEST


def test_content_type_supplies_a_missing_media_type() -> None:
    document = oci_manifest(mediaType=_DROP)
    assert parse(document, mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST
    docker = {**document, "layers": []}
    assert parse(docker, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST


def test_content_type_must_match_declared_media_type() -> None:
    error = invalid(oci_manifest(), mt.DOCKER_MANIFEST)
    assert mt.DOCKER_MANIFEST in error.message
    assert mt.OCI_MANIFEST in error.message


def test_index_pushed_as_image_manifest_is_invalid() -> None:
    invalid(oci_index(), mt.OCI_MANIFEST)


def test_content_type_wins_over_shape() -> None:
    # No mediaType in the body: the Content-Type decides, and an index needs manifests.
    invalid(oci_manifest(mediaType=_DROP), mt.OCI_INDEX)


@pytest.mark.parametrize("media_type", [mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED])
def test_docker_schema1_is_rejected(media_type: str) -> None:
    document = {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}
    assert "schema 1" in invalid(document, media_type).message
    assert "schema 1" in invalid({**document, "mediaType": media_type}).message


@pytest.mark.parametrize(
    "media_type", [OCI_CONFIG, "text/plain", "application/vnd.oci.artifact.manifest.v1+json"]
)
def test_unsupported_media_types(media_type: str) -> None:
    assert media_type in invalid(oci_manifest(mediaType=media_type)).message
    assert media_type in invalid(oci_manifest(mediaType=_DROP), media_type).message


def test_undetectable_media_type() -> None:
    invalid({"schemaVersion": 2})
    invalid({"schemaVersion": 2, "layers": []})


def test_empty_media_type_is_treated_as_absent() -> None:
    assert parse(oci_manifest(mediaType="")).media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize("value", [1, True, ["x"], {"a": "b"}])
def test_non_string_media_type(value: Any) -> None:
    invalid(oci_manifest(mediaType=value))


# -- top-level validation -------------------------------------------------------------


@pytest.mark.parametrize("value", [_DROP, 1, 3, "2", 2.5, None, True])
def test_schema_version_must_be_2(value: Any) -> None:
    assert "schemaVersion" in invalid(oci_manifest(schemaVersion=value)).message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"not json", id="text"),
        pytest.param(b"\xff\xfe\xfd", id="bad-utf8"),
        pytest.param(b'{"schemaVersion": 2,}', id="trailing-comma"),
        pytest.param(b'{"a": "\\ud800"', id="truncated-escape"),
        pytest.param(b"1" * 5000, id="huge-integer"),
    ],
)
def test_not_json(data: bytes) -> None:
    with pytest.raises(ManifestInvalidError):
        parse_manifest(data, mt.OCI_MANIFEST)


@pytest.mark.parametrize("document", [[], [oci_manifest()], "manifest", 2, None, True])
def test_not_an_object(document: Any) -> None:
    assert "object" in invalid(document).message


@pytest.mark.parametrize("value", [1, ["x"], {"a": "b"}])
def test_artifact_type_must_be_a_string(value: Any) -> None:
    assert "artifactType" in invalid(oci_manifest(artifactType=value)).message


@pytest.mark.parametrize("value", [[], "a=b", {"a": 1}, {"a": None}, {"a": ["b"]}])
def test_manifest_annotations_must_map_strings(value: Any) -> None:
    assert "annotations" in invalid(oci_manifest(annotations=value)).message


def test_manifest_invalid_error_is_a_400() -> None:
    error = invalid([])
    assert type(error) is ManifestInvalidError
    assert error.code == "MANIFEST_INVALID"
    assert error.status == 400


# -- descriptor validation ------------------------------------------------------------

_good = desc(OCI_LAYER, b"good")

BAD_DESCRIPTORS: list[Any] = [
    pytest.param("sha256:abc", "a descriptor must be a JSON object", id="string"),
    pytest.param(None, "a descriptor must be a JSON object", id="null"),
    pytest.param([_good], "a descriptor must be a JSON object", id="list"),
    pytest.param({**_good, "mediaType": _DROP}, "mediaType", id="no-media-type"),
    pytest.param({**_good, "mediaType": ""}, "mediaType", id="empty-media-type"),
    pytest.param({**_good, "mediaType": 7}, "mediaType", id="int-media-type"),
    pytest.param({**_good, "digest": _DROP}, "digest", id="no-digest"),
    pytest.param({**_good, "digest": 7}, "digest", id="int-digest"),
    pytest.param({**_good, "digest": "sha256:abc"}, "sha256", id="short-digest"),
    pytest.param({**_good, "digest": "md5:" + "0" * 32}, "md5", id="md5-digest"),
    pytest.param({**_good, "digest": "nonsense"}, "digest", id="garbage-digest"),
    pytest.param({**_good, "size": _DROP}, "size", id="no-size"),
    pytest.param({**_good, "size": -1}, "size", id="negative-size"),
    pytest.param({**_good, "size": 1.0}, "size", id="float-size"),
    pytest.param({**_good, "size": "4"}, "size", id="string-size"),
    pytest.param({**_good, "size": True}, "size", id="bool-size"),
    pytest.param({**_good, "size": None}, "size", id="null-size"),
    pytest.param({**_good, "urls": "https://x"}, "urls", id="string-urls"),
    pytest.param({**_good, "urls": ["https://x", 1]}, "urls", id="non-string-url"),
    pytest.param({**_good, "artifactType": 1}, "artifactType", id="int-artifact-type"),
    pytest.param({**_good, "annotations": ["a"]}, "annotations", id="list-annotations"),
    pytest.param({**_good, "annotations": {"a": 1}}, "annotations", id="int-annotation"),
]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not _DROP}
    return value


@pytest.mark.parametrize(("bad", "mentions"), BAD_DESCRIPTORS)
def test_bad_config_descriptor(bad: Any, mentions: str) -> None:
    message = invalid(oci_manifest(config=_clean(bad))).message
    assert message.startswith("config:")
    assert mentions in message


@pytest.mark.parametrize(("bad", "mentions"), BAD_DESCRIPTORS)
def test_bad_layer_descriptor_names_its_index(bad: Any, mentions: str) -> None:
    message = invalid(oci_manifest(layers=[_good, _clean(bad)])).message
    assert message.startswith("layers[1]:")
    assert mentions in message


@pytest.mark.parametrize(("bad", "mentions"), BAD_DESCRIPTORS)
def test_bad_index_entry_names_its_index(bad: Any, mentions: str) -> None:
    message = invalid(oci_index(manifests=[_clean(bad)])).message
    assert message.startswith("manifests[0]:")
    assert mentions in message


# "subject": null means no subject (tested below), so leave that case out here.
BAD_SUBJECTS = [p for p in BAD_DESCRIPTORS if p.values[0] is not None]


@pytest.mark.parametrize(("bad", "mentions"), BAD_SUBJECTS)
def test_bad_subject_descriptor(bad: Any, mentions: str) -> None:
    message = invalid(oci_manifest(subject=_clean(bad))).message
    assert message.startswith("subject:")
    assert mentions in message


def test_null_subject_means_none() -> None:
    assert parse(oci_manifest(subject=None)).subject is None


@pytest.mark.parametrize("value", [{}, "layer", 5])
def test_layers_must_be_a_list(value: Any) -> None:
    assert "layers" in invalid(oci_manifest(layers=value)).message


@pytest.mark.parametrize("value", [{}, "manifest", 5])
def test_index_manifests_must_be_a_list(value: Any) -> None:
    assert "manifests" in invalid(oci_index(manifests=value)).message


# -- hostile input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * 100_000, id="nested-arrays"),
        pytest.param(b'{"a":' * 100_000, id="nested-objects"),
        pytest.param(
            b'{"schemaVersion": 2, "annotations": ' + b"[" * 100_000, id="nested-in-manifest"
        ),
    ],
)
def test_deeply_nested_json_is_manifest_invalid(data: bytes) -> None:
    # A few hundred kilobytes of brackets (well under the 4 MiB manifest limit) must be
    # a 400 MANIFEST_INVALID, not an internal error from the JSON decoder's recursion.
    with pytest.raises(ManifestInvalidError):
        parse_manifest(data, mt.OCI_MANIFEST)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "artifactType",
        "annotations",
        "digest",
        "size",
        "urls",
    ]
)
field_values = st.one_of(
    json_values,
    st.sampled_from([2, *sorted(mt.MANIFEST_TYPES), mt.DOCKER_SCHEMA1, str(Digest.of(b""))]),
    st.builds(lambda c: desc(OCI_LAYER, c), st.binary(max_size=4)),
    st.lists(st.builds(lambda c: desc(OCI_LAYER, c), st.binary(max_size=4)), max_size=3),
)
# Documents shaped like manifests, so that the deeper checks run, not just the JSON parse.
manifest_like = st.recursive(
    st.dictionaries(field_names, field_values, max_size=7),
    lambda children: st.dictionaries(field_names, field_values | children, max_size=7),
    max_leaves=10,
)
content_types = st.one_of(
    st.none(),
    st.sampled_from([*sorted(mt.MANIFEST_TYPES), mt.OCTET_STREAM, "application/json", ""]),
    st.text(max_size=20),
)


def _parse_or_reject(data: bytes, content_type: str | None) -> None:
    try:
        manifest = parse_manifest(data, content_type)
    except ManifestInvalidError:
        return
    assert manifest.media_type in mt.MANIFEST_TYPES
    assert manifest.is_index == (manifest.media_type in mt.INDEXES)
    if manifest.is_index:
        assert manifest.config is None
        assert manifest.layers == ()
    else:
        assert manifest.config is not None
        assert manifest.manifests == ()


@given(st.binary(max_size=256), content_types)
def test_arbitrary_bytes_parse_or_raise_manifest_invalid(
    data: bytes, content_type: str | None
) -> None:
    _parse_or_reject(data, content_type)


@given(json_values, content_types)
def test_arbitrary_json_parses_or_raises_manifest_invalid(
    document: Any, content_type: str | None
) -> None:
    _parse_or_reject(encode(document), content_type)


@given(manifest_like, content_types)
def test_manifest_shaped_json_parses_or_raises_manifest_invalid(
    document: dict[str, Any], content_type: str | None
) -> None:
    _parse_or_reject(encode(document), content_type)


@given(
    st.lists(st.binary(max_size=16), max_size=5),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_valid_manifests_round_trip_their_references(
    layers: list[bytes], annotations: dict[str, str]
) -> None:
    document = oci_manifest(
        layers=[desc(OCI_LAYER, content) for content in layers], annotations=annotations
    )
    manifest = parse(document)
    assert [layer.digest for layer in manifest.layers] == [Digest.of(c) for c in layers]
    assert [layer.size for layer in manifest.layers] == [len(c) for c in layers]
    assert manifest.annotations == annotations


@pytest.mark.parametrize(
    ("lines", "media_type", "allowed"),
    [
        ([], mt.OCI_INDEX, True),  # a client that names nothing takes what is stored
        (["application/json"], mt.OCI_INDEX, True),  # ... or names no manifest type
        ([mt.OCI_MANIFEST, mt.DOCKER_MANIFEST], mt.OCI_MANIFEST, True),
        ([mt.DOCKER_MANIFEST], mt.OCI_MANIFEST, False),
        ([f"{mt.DOCKER_MANIFEST}, */*;q=0.1"], mt.OCI_INDEX, True),
        ([f"{mt.DOCKER_MANIFEST};q=0.5", mt.OCI_INDEX.upper()], mt.OCI_INDEX, True),
    ],
)
def test_acceptance_allows_a_manifest_the_client_takes(
    lines: list[str], media_type: str, allowed: bool
) -> None:
    assert mt.acceptance(lines).allows(media_type) is allowed


def test_acceptance_of_long_and_repeated_accept_lines() -> None:
    # Lines too long to remember are parsed all the same; repeated ones give equal answers.
    long = [f"application/x-{i}" for i in range(200)] + [mt.DOCKER_MANIFEST]
    found = mt.acceptance([", ".join(long)])
    assert found.types == tuple(long)
    assert found.manifest_types == frozenset({mt.DOCKER_MANIFEST})
    assert not found.allows(mt.OCI_MANIFEST)
    short = [mt.OCI_MANIFEST, mt.OCI_INDEX]
    assert mt.acceptance(short) == mt.acceptance(iter(short)) == mt.acceptance(tuple(short))
    assert mt.acceptance(short).manifest_types == frozenset(short)
