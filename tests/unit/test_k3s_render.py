"""`dockyard k3s registries`: golden files, and every output lints clean and decodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.k3s.hosts import hosts_files, plan_hosts
from dockyard.k3s.lint import lint_registries
from dockyard.k3s.model import AuthConfig, Mirror, TLSConfig, parse_registries
from dockyard.k3s.render import (
    DEFAULT_MIRRORS,
    RegistriesOptions,
    RenderError,
    render_registries,
    validate,
)

GOLDEN = Path(__file__).parent / "golden" / "k3s_registries"

CASES = {
    "nodeport": RegistriesOptions(endpoints=("http://127.0.0.1:30500",)),
    "nodeport-auth": RegistriesOptions(
        endpoints=("http://127.0.0.1:30500",), username="mirror", password='s3cr"et\\'
    ),
    "dns-tls": RegistriesOptions(
        endpoints=("https://dockyard.example.com", "http://127.0.0.1:30500"),
        mirrors=("docker.io", "quay.io"),
        ca_file="/etc/dockyard/ca.crt",
        cert_file="/etc/dockyard/client.crt",
        key_file="/etc/dockyard/client.key",
    ),
    "wildcard-insecure": RegistriesOptions(
        endpoints=("https://dockyard.registry.svc:5000",),
        mirrors=("*",),
        insecure_skip_verify=True,
        username="ci",
        password="pw",
    ),
}


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing {path}; DOCKYARD_UPDATE_GOLDEN=1 writes it"
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_registries_yaml_matches_golden(case: str) -> None:
    assert_golden(f"{case}.yaml", render_registries(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_file_is_lint_clean(case: str) -> None:
    text = render_registries(CASES[case])
    assert lint_registries(text, file_exists=lambda _path: True) == []


def test_default_mirrors_all_point_at_the_endpoint() -> None:
    registries = parse_registries(render_registries(CASES["nodeport"]))
    assert list(registries.mirrors) == list(DEFAULT_MIRRORS)
    expected = Mirror(endpoints=("http://127.0.0.1:30500",))
    assert all(mirror == expected for mirror in registries.mirrors.values())
    assert registries.configs == {}


def test_credentials_and_tls_are_keyed_by_the_endpoint_host() -> None:
    registries = parse_registries(render_registries(CASES["dns-tls"]))
    # TLS only where TLS is spoken; never keyed by the upstream (docker.io).
    assert list(registries.configs) == ["dockyard.example.com"]
    assert registries.configs["dockyard.example.com"].tls == TLSConfig(
        "/etc/dockyard/ca.crt", "/etc/dockyard/client.crt", "/etc/dockyard/client.key"
    )
    registries = parse_registries(render_registries(CASES["nodeport-auth"]))
    assert registries.configs["127.0.0.1:30500"].auth == AuthConfig("mirror", 's3cr"et\\')
    assert registries.configs["127.0.0.1:30500"].tls is None


def test_wildcard_becomes_default_hosts_toml() -> None:
    plan = plan_hosts(parse_registries(render_registries(CASES["wildcard-insecure"])))
    assert sorted(hosts_files(plan)) == [
        "certs.d/_default/hosts.toml",
        "certs.d/dockyard.registry.svc:5000/hosts.toml",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RegistriesOptions(endpoints=()), "at least one --endpoint"),
        (RegistriesOptions(endpoints=("127.0.0.1:30500",)), "give the scheme"),
        (RegistriesOptions(endpoints=("ftp://h",)), "http or https"),
        (RegistriesOptions(endpoints=("http://bad host",)), "invalid character"),
        (RegistriesOptions(endpoints=("http://h:1", "http://h:1/v2")), "given twice"),
        (RegistriesOptions(endpoints=("http://h:1",), mirrors=("https://docker.io",)), "scheme"),
        (RegistriesOptions(endpoints=("http://h:1",), mirrors=("quay.io/org",)), "path"),
        (RegistriesOptions(endpoints=("http://h:1",), mirrors=("a", "a")), "twice"),
        (RegistriesOptions(endpoints=("http://h:1",), ca_file="/ca"), "https:// endpoint"),
        (RegistriesOptions(endpoints=("https://h",), cert_file="/c"), "--key-file"),
        (RegistriesOptions(endpoints=("http://h:1",), username="u"), "--password"),
    ],
)
def test_refuses_options_that_make_a_broken_file(options: RegistriesOptions, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        validate(options)
