"""Endpoint addresses as K3s normalizes them (cases from K3s's own config_test.go)."""

from __future__ import annotations

import pytest

from dockyard.k3s.endpoint import EndpointError, go_quote, is_localhost, normalize_endpoint


@pytest.mark.parametrize(
    ("address", "url", "override"),
    [
        ("registry.example.com", "https://registry.example.com/v2", False),
        ("registry.example.com:443", "https://registry.example.com:443/v2", False),
        ("registry.example.com/v2", "https://registry.example.com/v2", False),
        ("https://registry.example.com", "https://registry.example.com/v2", False),
        ("https://registry.example.com/", "https://registry.example.com/v2", False),
        ("https://registry.example.com/prefix/v2", "https://registry.example.com/prefix/v2", True),
        ("registry.example.com/prefix/v2", "https://registry.example.com/prefix/v2", True),
        ("1.2.3.4", "https://1.2.3.4/v2", False),
        ("1.2.3.4:443", "https://1.2.3.4:443/v2", False),
        # loopback on an odd port defaults to http, with a scheme it is what it says
        ("localhost:5000", "http://localhost:5000/v2", False),
        ("127.0.0.1:5000", "http://127.0.0.1:5000/v2", False),
        ("[::1]:5000", "http://[::1]:5000/v2", False),
        ("localhost", "https://localhost/v2", False),
        ("localhost:443", "https://localhost:443/v2", False),
        ("https://localhost:5000", "https://localhost:5000/v2", False),
        ("HTTP://127.0.0.1:30500", "http://127.0.0.1:30500/v2", False),
        # docker.io is contacted as Docker Hub's API host
        ("docker.io", "https://registry-1.docker.io/v2", False),
        ("*", "https://*/v2", False),
    ],
)
def test_normalize_endpoint_like_k3s(address: str, url: str, override: bool) -> None:
    normalized = normalize_endpoint(address)
    assert str(normalized.url) == url
    assert normalized.override_path is override


def test_registry_name_is_docker_io_for_docker_hub() -> None:
    assert normalize_endpoint("https://registry-1.docker.io").registry == "docker.io"
    assert normalize_endpoint("docker.io").registry == "docker.io"
    assert normalize_endpoint("http://127.0.0.1:30500/v2").registry == "127.0.0.1:30500"


@pytest.mark.parametrize(
    "address",
    ["http://bad host/", "http://host:abc/", "http://[::1/", "http://a\x01b", "1http://x"],
)
def test_addresses_go_rejects(address: str) -> None:
    with pytest.raises(EndpointError):
        normalize_endpoint(address)


def test_is_localhost() -> None:
    assert is_localhost("localhost")
    assert is_localhost("127.0.0.5:80")
    assert is_localhost("[::1]:5000")
    assert not is_localhost("registry.example.com:5000")
    assert not is_localhost("10.0.0.1:30500")


def test_go_quote_escapes_like_strconv_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there") == '"tab\\there"'
    assert go_quote("über") == '"über"'
    assert go_quote("nb\u00a0sp\x7f") == '"nb\\u00a0sp\\x7f"'
