"""Property-based fuzzing of the configuration readers: config.yml (with REGISTRY_*
variables) and K3s's registries.yaml (the linter and the model `dockyard k3s` builds on).

Whatever the file holds, load_config raises ConfigError or returns a configuration the
server can be built from; lint_registries always returns findings; parse_registries raises
RegistriesError or returns the model. The invariants live in fuzz/checks.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from fuzz import checks
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dockyard.config import ConfigError, load_config
from dockyard.k3s.lint import lint_registries
from dockyard.k3s.model import RegistriesError, parse_registries

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- YAML documents from a vocabulary of the keys that matter ----------------------------

CONFIG_KEYS = (
    "version",
    "log",
    "level",
    "formatter",
    "fields",
    "accesslog",
    "disabled",
    "storage",
    "filesystem",
    "rootdirectory",
    "delete",
    "enabled",
    "maintenance",
    "uploadpurging",
    "age",
    "interval",
    "gc",
    "grace",
    "quota",
    "total",
    "repositories",
    "prefix",
    "limit",
    "retention",
    "keeptags",
    "pulledwithin",
    "s3",
    "http",
    "addr",
    "headers",
    "draintimeout",
    "readtimeout",
    "tls",
    "certificate",
    "key",
    "clientcas",
    "proxy",
    "remoteurl",
    "username",
    "password",
    "ttl",
    "upstreams",
    "name",
    "url",
    "cache",
    "maxsize",
    "highwatermark",
    "auth",
    "htpasswd",
    "realm",
    "path",
    "token",
    "tokenserver",
    "access",
    "pull",
    "push",
    "groups",
    "catalog",
    "maxentries",
    "validation",
    "manifests",
    "notifications",
    "<<",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            ":5000",
            "127.0.0.1:0",
            "[::1]:5000",
            ":99999",
            "10s",
            "1h30m",
            "168h",
            "5µs",
            "-1s",
            "1e9h",
            "500MB",
            "20GiB",
            "40%",
            "0%",
            "101%",
            "1e400",
            "debug",
            "text",
            "json",
            "https://registry-1.docker.io",
            "http://[::1",
            "docker.io",
            "a..b",
            "/tmp/x",
            "",
            "\0",
            "~",
        ]
    ),
    st.text(max_size=15),
)


def documents(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(keys), children, max_size=4)
        ),
        max_leaves=20,
    )


def dump(document: Any, flow: bool) -> str:
    return yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)


def mutate(text: str, position: int, insert: str) -> str:
    position = position % (len(text) + 1)
    return text[:position] + insert + text[position:]


YAML_NOISE = st.sampled_from(
    ["\t", "*", "&a ", "*a", "<<: *a\n", "---\n", "!!python/name:os.system ", "? ", ": ", "\0"]
)


def yaml_texts(keys: tuple[str, ...]) -> st.SearchStrategy[str]:
    dumped = st.builds(dump, documents(keys), st.booleans())
    return st.one_of(
        dumped,
        st.builds(mutate, dumped, st.integers(min_value=0), YAML_NOISE),
        st.text(alphabet="abc:-[]{}&*!|>'\"#\n\t ", max_size=80),
        st.text(max_size=200),
    )


environments = st.dictionaries(
    st.lists(st.sampled_from((*CONFIG_KEYS[:-1], "", "X")), min_size=0, max_size=4).map(
        lambda parts: "REGISTRY_" + "_".join(parts).upper()
    ),
    st.one_of(SCALARS.map(lambda v: "" if v is None else str(v)), st.text(max_size=20)),
    max_size=4,
)


@FAST
@given(
    st.one_of(yaml_texts(CONFIG_KEYS), st.binary(max_size=100)),
    environments,
)
@example(b"\xff\xfe\x00", {})
@example("[" * 5000, {})
@example("a: " + "[" * 5000, {})
@example("", {"REGISTRY_LOG_LEVEL": "[" * 5000})
@example("", {"REGISTRY_": "x", "REGISTRY_HTTP__ADDR": ":1"})
@example("http: 5", {"REGISTRY_HTTP_ADDR": ":5000"})
@example("a: &a [*a]", {})
def test_config(text: str | bytes, environ: dict[str, str]) -> None:
    checks.check_config(text, environ)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"version: 0.1\n\xff\xfe\n", "not UTF-8"),
        (b"[" * 5000, "nested too deeply"),
    ],
)
def test_unreadable_config_is_a_config_error(tmp_path: Any, content: bytes, message: str) -> None:
    # Regression: these escaped as UnicodeDecodeError and RecursionError (a traceback
    # from `dockyard serve --config`).
    path = tmp_path / "config.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_deeply_nested_variable_is_plain_text() -> None:
    value = "[" * 5000
    loaded = load_config(None, environ={"REGISTRY_LOG_FIELDS_X": value})
    assert loaded.config.log.fields["x"] == value


# -- registries.yaml ----------------------------------------------------------------------

REGISTRIES_KEYS = (
    "mirrors",
    "configs",
    "docker.io",
    "*",
    "registry.local:5000",
    "10.0.0.5:30500",
    "endpoint",
    "rewrite",
    "auth",
    "username",
    "password",
    "auth",
    "identitytoken",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "insecure_skip_verify",
    "^(.*)$",
    "<<",
    "",
)


@FAST
@given(yaml_texts(REGISTRIES_KEYS))
@example("[" * 5000)
@example("mirrors: " + "{a: " * 3000)
@example("<<: [1]")
@example("mirrors: {<<: 1}")
@example("mirrors:\n  a: &x {endpoint: [b]}\n  b: {<<: *x}\n")
@example("mirrors:\n\t docker.io: {}")
@example("mirrors: {*: {}}")
def test_registries(text: str) -> None:
    checks.check_registries(text)


@pytest.mark.parametrize(
    "text",
    [pytest.param("[" * 5000, id="list"), pytest.param("mirrors: " + "{a: " * 3000, id="map")],
)
def test_deeply_nested_registries_are_an_error(text: str) -> None:
    # Regression: RecursionError escaped both the linter and the model.
    findings = lint_registries(text)
    assert [f.code for f in findings if f.severity == "error"] == ["yaml-syntax"]
    with pytest.raises(RegistriesError, match="nested too deeply"):
        parse_registries(text)


@pytest.mark.parametrize("text", ["<<: [1]", "mirrors: {<<: 1}", "configs: {a: {<<: [x]}}"])
def test_merging_something_that_is_not_a_mapping_is_a_registries_error(text: str) -> None:
    # Regression: yaml's ConstructorError escaped parse_registries.
    lint_registries(text)
    with pytest.raises(RegistriesError, match="line 1"):
        parse_registries(text)
