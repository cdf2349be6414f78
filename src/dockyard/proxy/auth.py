"""Upstream authentication: `WWW-Authenticate` challenges, Bearer tokens cached until expiry."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """`Bearer realm="https://auth",service="registry",scope="repository:x:pull"`."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by scope, kept until shortly before they expire."""

    # Registries default to 60 s when a token response names no lifetime.
    DEFAULT_LIFETIME = 60.0
    MARGIN = 5.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, _Token] = {}

    def get(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is None or token.expires <= self._clock():
            self._tokens.pop(scope, None)
            return None
        return token.value

    def put(self, scope: str, value: str, lifetime: float | None) -> None:
        seconds = max((lifetime or self.DEFAULT_LIFETIME) - self.MARGIN, 1.0)
        self._tokens[scope] = _Token(value, self._clock() + seconds)
