"""htpasswd files with bcrypt entries, as Distribution's `auth.htpasswd` reads them."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt

# Verified (user, password) pairs are remembered briefly: bcrypt costs ~50 ms by design,
# and clients send Basic credentials with every request.
VERIFIED_TTL = 60.0


def hash_password(password: str, rounds: int = 10) -> str:
    """A bcrypt hash in the `$2y$` form htpasswd writes (the same algorithm as `$2b$`)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return "$2y$" + hashed[4:]


def _check(password: str, hashed: str) -> bool:
    if not hashed.startswith(("$2y$", "$2a$", "$2b$")):
        return False  # only bcrypt entries are accepted, as in Distribution
    try:
        return bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode())
    except ValueError:
        return False


def parse(text: str) -> dict[str, str]:
    """`name:hash` lines; blank lines and `#` comments ignored."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, hashed = line.partition(":")
        entries[name] = hashed
    return entries


def render(entries: dict[str, str]) -> str:
    return "".join(f"{name}:{hashed}\n" for name, hashed in sorted(entries.items()))


def write(path: Path, entries: dict[str, str]) -> None:
    """Replace the file atomically, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(entries))
    os.replace(temp, path)


@dataclass
class _Verified:
    expires: float


class HtpasswdFile:
    """Checks credentials against a file, re-reading it when it changes on disk."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._entries: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._verified: dict[str, _Verified] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            # A line that is not UTF-8 (a Latin-1 user name) cannot match any credentials
            # (they are decoded as UTF-8); it must not lock everyone else out.
            self._entries = parse(self.path.read_text(encoding="utf-8", errors="replace"))
            self._stamp = stamp
            self._verified.clear()

    def users(self) -> list[str]:
        self._reload()
        return sorted(self._entries)

    def verify(self, user: str, password: str) -> bool:
        """Whether the password is right for the user."""
        self._reload()
        hashed = self._entries.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).hexdigest()
        hit = self._verified.get(key)
        now = self._clock()
        if hit is not None and hit.expires > now:
            return True
        if not _check(password, hashed):
            return False
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = _Verified(now + VERIFIED_TTL)
        return True
