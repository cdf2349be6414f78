"""Registry endpoint addresses the way K3s and containerd read them.

`normalize_endpoint` is K3s's `normalizeEndpointAddress` (pkg/agent/containerd/config.go),
which follows containerd's own rules (remotes/docker/config/hosts.go): an address without a
scheme is https, except a loopback host on a port other than 443, which is http; `docker.io`
is contacted as `registry-1.docker.io`; an empty path, `/` or `/v2` becomes `/v2`, and any
other path is used as is (`override_path`). Go's `net/url` is stricter than Python's
`urllib`, so the few rules of it that matter here (ports, host characters, control
characters) are checked by hand.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote

DOCKER_IO = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# Go's net/url accepts these ASCII characters in a host (besides letters and digits).
_HOST_PUNCTUATION = set("!$&'()*+,;=:[]<>\"-._~%")


class EndpointError(ValueError):
    """An address that Go's url.Parse rejects (K3s then ignores the endpoint)."""


@dataclass(frozen=True)
class EndpointURL:
    """A parsed endpoint; `str()` gives the form Go's `url.URL.String()` writes."""

    scheme: str
    host: str
    path: str
    userinfo: str = ""
    query: str = ""
    fragment: str = ""

    def __str__(self) -> str:
        if not (self.scheme or self.host or self.path):
            return ""
        text = f"{self.scheme}:" if self.scheme else ""
        if self.scheme or self.host or self.userinfo:
            text += "//" + (f"{self.userinfo}@" if self.userinfo else "") + self.host
        text += quote(self.path, safe="/!$&'()*+,;=:@-._~%")
        if self.query:
            text += "?" + self.query
        if self.fragment:
            text += "#" + self.fragment
        return text

    @property
    def port(self) -> str:
        return split_port(self.host)[1]


@dataclass(frozen=True)
class NormalizedEndpoint:
    """What K3s makes of one address: registry name, URL, and whether the path is kept."""

    registry: str
    url: EndpointURL
    override_path: bool
    scheme_given: bool


def split_port(host: str) -> tuple[str, str]:
    """`host:port` -> (`host`, `port`); Go's `URL.Hostname()` and `URL.Port()`."""
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            rest = host[end + 1 :]
            return host[1:end], rest[1:] if rest.startswith(":") else ""
        return host, ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    if sep and port == "":
        return name, ""
    return host, ""


def is_localhost(host: str) -> bool:
    """containerd's `docker.IsLocalhost`: `localhost` or a loopback IP, with or without port."""
    name = host
    if host.startswith("[") and "]" in host:
        name = host[1 : host.index("]")]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def default_host(registry: str) -> str:
    """containerd's `docker.DefaultHost`: Docker Hub's API host for `docker.io`."""
    return DOCKER_HUB_HOST if registry == DOCKER_IO else registry


def _check_host(host: str) -> None:
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            raise EndpointError(f"missing ']' in host {host!r}")
        rest = host[end + 1 :]
        if rest and not ((rest.startswith(":") and rest[1:].isdigit()) or rest == ":"):
            raise EndpointError(f"invalid port {rest!r} after host")
        return
    colon = host.rfind(":")
    if colon != -1:
        port = host[colon + 1 :]
        if port and not port.isdigit():
            raise EndpointError(f"invalid port {host[colon:]!r} after host")
    for char in host:
        if ord(char) < 0x80 and not char.isalnum() and char not in _HOST_PUNCTUATION:
            raise EndpointError(f"invalid character {char!r} in host name")


def parse_url(address: str) -> EndpointURL:
    """Go's `url.Parse` for the shapes registry endpoints take."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        raise EndpointError("invalid control character in URL")
    rest, _, fragment = address.partition("#")
    rest, _, query = rest.partition("?")
    scheme = ""
    match = re.match(r"^([^:/]*):", rest)
    if match and rest[len(match.group(0)) :].startswith("//"):
        if not _SCHEME.match(match.group(1)):
            raise EndpointError(f"invalid scheme {match.group(1)!r}")
        scheme = match.group(1).lower()
        rest = rest[len(match.group(0)) :]
    elif match and not rest.startswith("//"):
        raise EndpointError("first path segment in URL cannot contain colon")
    if not rest.startswith("//"):
        return EndpointURL(scheme=scheme, host="", path=rest, query=query, fragment=fragment)
    authority, slash, path = rest[2:].partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        userinfo, host = "", authority
    _check_host(host)
    return EndpointURL(
        scheme=scheme,
        host=host,
        path=slash + path,
        userinfo=userinfo,
        query=query,
        fragment=fragment,
    )


def normalize_endpoint(address: str) -> NormalizedEndpoint:
    """K3s's `normalizeEndpointAddress` (without the embedded-registry special case)."""
    scheme_given = "://" in address
    url = parse_url(address if scheme_given else "//" + address)
    scheme = url.scheme
    if not scheme:
        port = url.port
        scheme = "http" if is_localhost(url.host) and port not in ("", "443") else "https"
    registry = url.host
    host = default_host(registry)
    if host == DOCKER_HUB_HOST:
        registry = DOCKER_IO
    if url.path in ("", "/", "/v2"):
        path, override = "/v2", False
    else:
        path, override = url.path, True
    normalized = EndpointURL(
        scheme=scheme,
        host=host,
        path=path,
        userinfo=url.userinfo,
        query=url.query,
        fragment=url.fragment,
    )
    return NormalizedEndpoint(registry, normalized, override, scheme_given)


def go_quote(text: str) -> str:
    """Go's `%q` (strconv.Quote): the quoting K3s uses for file paths and credentials."""
    out = ['"']
    escapes = {
        '"': '\\"',
        "\\": "\\\\",
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
    for char in text:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
