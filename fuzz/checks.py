"""The invariants every parser must keep, whatever its input.

Shared by the property-based tests (tests/unit/test_fuzz_*.py, hypothesis) and the
coverage-guided harnesses (fuzz/fuzz_*.py, atheris): each `check_*` function feeds one
input to one parser and raises AssertionError when the parser breaks its contract (an
exception it does not document, or a result that would be unsafe to use).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from dockyard.api.ranges import UnsatisfiableRange, parse_content_range, parse_range
from dockyard.auth import htpasswd
from dockyard.auth.tokens import parse_scopes
from dockyard.cli.common import cached_prefixes, retention_rules
from dockyard.cli.serve import api_settings
from dockyard.config import ConfigError, load_config, parse_addr, parse_duration
from dockyard.errors import (
    BlobUploadInvalidError,
    DigestInvalidError,
    ManifestInvalidError,
    NameInvalidError,
    TagInvalidError,
)
from dockyard.k3s.lint import lint_registries
from dockyard.k3s.model import RegistriesError, parse_registries
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import ALGORITHMS, Digest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import MAX_NAME_LENGTH, is_valid_tag, validate_name, validate_tag
from dockyard.oci.reference import parse_image_reference
from dockyard.proxy.upstream import upstreams_from_config
from dockyard.registry.paths import blob_key

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_SAFE_KEY = re.compile(r"^[a-z0-9/]+$")


# -- names, tags, references, digests ---------------------------------------------------


def _component_ok(component: str) -> bool:
    """The spec's path-component grammar, written without a regular expression:
    runs of [a-z0-9] separated by `.`, `_`, `__` or one or more `-`."""
    if not component or component[0] not in _LOWER_ALNUM or component[-1] not in _LOWER_ALNUM:
        return False
    separator = ""
    for char in component:
        if char in _LOWER_ALNUM:
            if separator and separator not in (".", "_", "__") and set(separator) != {"-"}:
                return False
            separator = ""
        elif char in "._-":
            separator += char
        else:
            return False
    return True


def grammar_accepts_name(text: str) -> bool:
    """An independent implementation of the repository-name grammar."""
    return 0 < len(text) <= MAX_NAME_LENGTH and all(_component_ok(c) for c in text.split("/"))


def check_name(text: str) -> None:
    try:
        accepted = validate_name(text)
    except NameInvalidError as exc:
        assert not grammar_accepts_name(text), f"valid name refused: {text!r}"
        assert exc.status == 400
        return
    assert grammar_accepts_name(text), f"invalid name accepted: {text!r}"
    assert accepted == text
    # What makes a name safe to use anywhere near a path.
    assert text.isascii() and "\0" not in text and not text.startswith("/")
    assert all(part not in ("", ".", "..") for part in text.split("/"))


def check_tag(text: str) -> None:
    try:
        validate_tag(text)
    except TagInvalidError:
        assert not is_valid_tag(text)
        return
    assert is_valid_tag(text)
    assert 0 < len(text) <= 128 and text.isascii()
    assert text[0] not in ".-" and "/" not in text and "\0" not in text


def check_reference(text: str) -> None:
    try:
        ref = parse_image_reference(text)
    except ValueError:
        return
    validate_name(ref.repository)
    if ref.tag is not None:
        validate_tag(ref.tag)
    assert ref.tag is not None or ref.digest is not None
    assert "/" not in ref.registry and "@" not in ref.registry
    # Normalising is idempotent: the printed form parses to the same reference.
    again = parse_image_reference(str(ref))
    assert again == ref, f"{text!r} -> {ref} -> {again}"
    assert ref.reference in (ref.tag, str(ref.digest))


def check_digest(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except DigestInvalidError as exc:
        assert exc.status == 400
        return
    assert str(digest) == text
    assert digest.algorithm in ALGORITHMS
    assert len(digest.hex) == ALGORITHMS[digest.algorithm]
    assert all(c in "0123456789abcdef" for c in digest.hex)
    key = blob_key(digest)
    assert _SAFE_KEY.fullmatch(key) and ".." not in key
    assert digest.hasher().name == digest.algorithm


# -- Range and Content-Range ------------------------------------------------------------


def check_range(header: str, size: int) -> None:
    try:
        selected = parse_range(header, size)
    except UnsatisfiableRange:
        return
    if selected is None:
        return
    start, end = selected
    assert 0 <= start <= end < size, f"{header!r} on {size} bytes -> {selected}"


def check_content_range(header: str) -> None:
    try:
        parsed = parse_content_range(header)
    except BlobUploadInvalidError as exc:
        assert exc.status == 400
        return
    if parsed is None:
        assert not header.strip()
        return
    start, end = parsed
    assert 0 <= start <= end < 10**19


# -- manifests --------------------------------------------------------------------------


def check_manifest(data: bytes, content_type: str | None) -> None:
    try:
        manifest = parse_manifest(data, content_type)
    except ManifestInvalidError as exc:
        assert exc.status == 400
        return
    assert manifest.media_type in mt.MANIFEST_TYPES
    descriptors = [*manifest.layers, *manifest.manifests]
    descriptors += [d for d in (manifest.config, manifest.subject) if d is not None]
    for descriptor in descriptors:
        check_digest(str(descriptor.digest))
        assert isinstance(descriptor.size, int) and descriptor.size >= 0
        assert isinstance(descriptor.media_type, str) and descriptor.media_type
    if manifest.is_index:
        assert manifest.config is None and not manifest.layers
    else:
        assert manifest.config is not None and not manifest.manifests
    for blob in manifest.blob_references():
        assert blob in descriptors


# -- configuration files ----------------------------------------------------------------


def check_config(text: str | bytes, environ: Mapping[str, str]) -> None:
    """load_config on arbitrary file content and REGISTRY_* variables: ConfigError or a
    configuration the server can be built from."""
    fd, name = tempfile.mkstemp(prefix="dockyard-fuzz-", suffix=".yml")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            loaded = load_config(name, environ=environ)
        except ConfigError as exc:
            assert str(exc)
            return
    finally:
        os.unlink(name)
    config = loaded.config
    assert all(isinstance(w, str) for w in loaded.warnings)
    # What `dockyard serve` derives from a loaded configuration before it touches the disk.
    parse_addr(config.http.addr)
    parse_duration(config.http.draintimeout)
    api_settings(config, cached_prefixes(config))
    upstreams_from_config(config.proxy)
    retention_rules(config)
    assert isinstance(config.root, Path)


def check_registries(text: str) -> None:
    """The linter never fails on a registries.yaml; the K3s model refuses with its error."""
    findings = lint_registries(text, file_exists=lambda path: False)
    for finding in findings:
        assert finding.severity in ("error", "warning", "info"), finding
        assert finding.line >= 1 and finding.column >= 1, finding
        assert finding.code and finding.message
    try:
        parse_registries(text)
    except RegistriesError as exc:
        assert str(exc)


# -- credentials --------------------------------------------------------------------------


def check_htpasswd(text: str) -> None:
    entries = htpasswd.parse(text)
    for name, hashed in entries.items():
        assert ":" not in name
        assert "\n" not in name and "\n" not in hashed
        assert not name.startswith("#")
    # What `dockyard users` writes back reads the same.
    assert htpasswd.parse(htpasswd.render(entries)) == entries


def check_scopes(scopes: Sequence[str]) -> None:
    access = parse_scopes(scopes)
    for name, actions in access.items():
        # `repository:registry:catalog:pull` lands on the catalog's key: harmless, as the
        # token service grants the catalog only to users, whatever actions were asked.
        assert isinstance(name, str) and isinstance(actions, set)
        for action in actions:
            assert action and "," not in action and " " not in action
