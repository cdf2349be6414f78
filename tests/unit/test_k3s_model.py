"""registries.yaml decoded the way K3s (wharfie + yaml.v2, non-strict) decodes it."""

from __future__ import annotations

import pytest

from dockyard.k3s.model import (
    AuthConfig,
    Mirror,
    RegistriesError,
    RegistryConfig,
    TLSConfig,
    parse_registries,
)


def test_full_file() -> None:
    registries = parse_registries(
        """
mirrors:
  "docker.io":
    endpoint: ["http://127.0.0.1:30500", "https://mirror.example.com"]
    rewrite:
      "^rancher/(.*)": "mirror/$1"
  quay.io:
configs:
  "127.0.0.1:30500":
    auth: {username: bob, password: secret, identity_token: tok}
  mirror.example.com:
    tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: yes}
"""
    )
    assert registries.mirrors == {
        "docker.io": Mirror(
            endpoints=("http://127.0.0.1:30500", "https://mirror.example.com"),
            rewrites={"^rancher/(.*)": "mirror/$1"},
        ),
        "quay.io": Mirror(),
    }
    assert registries.configs == {
        "127.0.0.1:30500": RegistryConfig(
            auth=AuthConfig(username="bob", password="secret", identity_token="tok")
        ),
        "mirror.example.com": RegistryConfig(
            tls=TLSConfig("/ca.pem", "/c.pem", "/k.pem", insecure_skip_verify=True)
        ),
    }


def test_lenient_like_yaml_v2() -> None:
    registries = parse_registries(
        """
mirrors:
  docker.io:
    endpoints: ["http://ignored"]   # unknown keys are dropped without a word
configs:
  h:
    auth: {username: 0123, password: true}   # any scalar fills a string, as written
    tls: {insecure_skip_verify: y, ca_file: ~}
typo: 1
"""
    )
    assert registries.mirrors == {"docker.io": Mirror()}
    assert registries.configs["h"].auth == AuthConfig(username="0123", password="true")
    assert registries.configs["h"].tls == TLSConfig(insecure_skip_verify=True)


def test_duplicate_keys_keep_the_last() -> None:
    registries = parse_registries("mirrors:\n  a: {endpoint: [x]}\n  a: {endpoint: [y]}\n")
    assert registries.mirrors == {"a": Mirror(endpoints=("y",))}


def test_empty_file() -> None:
    assert parse_registries("") == parse_registries("# nothing\n")
    assert parse_registries("").mirrors == {}


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('mirrors:\n  docker.io:\n    endpoint: "http://x"\n', 3, 15),
        ('configs:\n  h:\n    tls: {insecure_skip_verify: "true"}\n', 3, 33),
        ("mirrors: [docker.io]\n", 1, 10),
        ("mirrors:\n  docker.io:\n    endpoint: [[a]]\n", 3, 16),
        ("mirrors:\n  *:\n    endpoint: []\n", 2, 4),
    ],
)
def test_what_k3s_refuses(text: str, line: int, column: int) -> None:
    with pytest.raises(RegistriesError) as caught:
        parse_registries(text)
    assert (caught.value.line, caught.value.column) == (line, column)
