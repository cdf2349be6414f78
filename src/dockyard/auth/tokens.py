"""Bearer tokens as Distribution's `auth.token` defines them: JWTs carrying `access` claims.

`TokenIssuer` is Dockyard's built-in token service (short-lived tokens for htpasswd users).
`TokenVerifier` accepts tokens from the built-in issuer and from an external token service
whose signing certificates are in `rootcertbundle` (tokens name their key by `x5c` chain or
by libtrust `kid`, as Distribution's token servers do).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.auth.scopes import Access, InvalidToken, parse_scopes

__all__ = ["Access", "InvalidToken", "TokenIssuer", "TokenVerifier", "parse_scopes"]


def libtrust_key_id(public_key: Any) -> str:
    """The `kid` Distribution's libtrust derives from a public key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _access_claim(access: Access) -> list[dict[str, Any]]:
    claims = []
    for name, actions in sorted(access.items()):
        if name == "registry:catalog":
            claims.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        elif actions:
            claims.append({"type": "repository", "name": name, "actions": sorted(actions)})
    return claims


def _access_from_claim(claim: Any) -> Access:
    access: Access = {}
    if not isinstance(claim, list):
        return access
    for entry in claim:
        if not isinstance(entry, dict):
            continue
        actions = entry.get("actions") or []
        if entry.get("type") == "repository" and isinstance(entry.get("name"), str):
            access.setdefault(entry["name"], set()).update(a for a in actions if isinstance(a, str))
        elif entry.get("type") == "registry" and entry.get("name") == "catalog":
            access["registry:catalog"] = {"*"}
    return access


@dataclass(frozen=True)
class VerifiedToken:
    subject: str | None
    access: Access


class TokenIssuer:
    """Signs short-lived tokens with an ES256 key (generated at start unless given)."""

    def __init__(
        self,
        issuer: str,
        service: str,
        lifetime: float = 300.0,
        key_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.service = service
        self.lifetime = lifetime
        self._clock = clock
        if key_file is not None:
            loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_file}: the token signing key must be an EC key")
            self._key = loaded
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key()
        self.key_id = libtrust_key_id(self.public_key)

    def issue(self, subject: str | None, access: Access) -> tuple[str, int, float]:
        """(token, lifetime in seconds, issued-at)."""
        now = self._clock()
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": self.service,
            "exp": int(now + self.lifetime),
            "nbf": int(now) - 1,
            "iat": int(now),
            "jti": secrets.token_hex(16),
            "access": _access_claim(access),
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})
        return token, int(self.lifetime), now


class TokenVerifier:
    """Checks signature, issuer, audience and lifetime; returns who and what the token allows."""

    ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256")

    def __init__(
        self,
        issuers: dict[str, str],  # issuer -> expected audience (service)
        keys: dict[str, Any],  # kid -> public key
        roots: list[x509.Certificate],
    ) -> None:
        self._issuers = issuers
        self._keys = keys
        self._roots = roots

    @classmethod
    def from_bundle(cls, issuer: str, service: str, bundle: Path) -> TokenVerifier:
        roots = x509.load_pem_x509_certificates(bundle.read_bytes())
        keys = {libtrust_key_id(c.public_key()): c.public_key() for c in roots}
        return cls({issuer: service}, keys, roots)

    def trust(self, issuer: TokenIssuer) -> None:
        """Also accept tokens from the built-in issuer."""
        self._issuers[issuer.issuer] = issuer.service
        self._keys[issuer.key_id] = issuer.public_key

    def _key_for(self, header: dict[str, Any]) -> Any:
        chain = header.get("x5c")
        if isinstance(chain, list) and chain:
            try:
                leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
            except ValueError:
                raise InvalidToken("malformed x5c certificate") from None
            for root in self._roots:
                if leaf == root:
                    return leaf.public_key()
                try:
                    leaf.verify_directly_issued_by(root)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return leaf.public_key()
            raise InvalidToken("token certificate is not signed by a trusted root")
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        raise InvalidToken("token names no trusted key")

    def verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
            key = self._key_for(header)
            unverified = jwt.decode(token, options={"verify_signature": False})
            issuer = unverified.get("iss")
            if issuer not in self._issuers:
                raise InvalidToken("token from an unknown issuer")
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.ALGORITHMS),
                audience=self._issuers[issuer],
                issuer=issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        subject = claims.get("sub") or None
        return VerifiedToken(subject, _access_from_claim(claims.get("access")))
