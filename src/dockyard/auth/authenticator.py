"""Who is asking (Basic or Bearer credentials) and what they may do where."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.auth.htpasswd import HtpasswdFile
from dockyard.auth.rules import AccessPolicy
from dockyard.auth.scopes import Access, InvalidToken
from dockyard.errors import UnauthorizedError

if TYPE_CHECKING:  # loaded only with token auth: jwt and cryptography are heavy
    from dockyard.auth.tokens import TokenIssuer, TokenVerifier

CATALOG = "registry:catalog"


@dataclass(frozen=True)
class Identity:
    user: str | None  # None: anonymous
    # Set when the caller presented a bearer token: the token's grants are the authority.
    token_access: Access | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None and self.token_access is None


ANONYMOUS = Identity(None)


@dataclass(frozen=True)
class Challenge:
    """How clients are told to authenticate."""

    scheme: str  # "basic" or "bearer"
    realm: str | None  # None: the built-in token service at this server's own URL
    service: str = ""


class Authenticator:
    def __init__(
        self,
        policy: AccessPolicy,
        challenge: Challenge,
        htpasswd: HtpasswdFile | None = None,
        verifier: TokenVerifier | None = None,
        issuer: TokenIssuer | None = None,
    ) -> None:
        self.policy = policy
        self.challenge = challenge
        self.htpasswd = htpasswd
        self.verifier = verifier
        self.issuer = issuer

    def identify(self, authorization: str | None) -> Identity:
        """The caller; UnauthorizedError for wrong or malformed credentials."""
        if not authorization:
            return ANONYMOUS
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.htpasswd is not None:
            user, password = _basic(value)
            if self.htpasswd.verify(user, password):
                return Identity(user)
            raise UnauthorizedError("invalid username or password")
        if scheme == "bearer" and self.verifier is not None:
            try:
                token = self.verifier.verify(value.strip())
            except InvalidToken as exc:
                raise UnauthorizedError(f"invalid token: {exc}") from None
            return Identity(token.subject, token.access)
        raise UnauthorizedError(f"unsupported authorization scheme {scheme!r}")

    def allowed(self, identity: Identity, repository: str) -> set[str]:
        """Actions the caller may take on a repository (or CATALOG)."""
        if identity.token_access is not None:
            return set(identity.token_access.get(repository, set()))
        if repository == CATALOG:
            return {"*"} if identity.user is not None else set()
        return self.policy.allowed(identity.user, repository)

    def grant(self, user: str | None, wanted: Access) -> Access:
        """What the token service grants: the wanted actions the policy allows."""
        granted: Access = {}
        for repository, actions in wanted.items():
            if repository == CATALOG:
                if user is not None:
                    granted[CATALOG] = {"*"}
                continue
            allowed = self.policy.allowed(user, repository) & actions
            if allowed:
                granted[repository] = allowed
        return granted

    def check_password(self, user: str, password: str) -> bool:
        return self.htpasswd is not None and self.htpasswd.verify(user, password)

    def challenge_header(self, base_url: str, scope: str | None, error: str | None = None) -> str:
        challenge = self.challenge
        if challenge.scheme == "basic":
            return f'Basic realm="{challenge.realm or "Registry Realm"}"'
        realm = challenge.realm or f"{base_url}/dockyard/auth/token"
        header = f'Bearer realm="{realm}",service="{challenge.service}"'
        if scope:
            header += f',scope="{scope}"'
        if error:
            header += f',error="{error}"'
        return header


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise UnauthorizedError("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise UnauthorizedError("malformed Basic credentials")
    return user, password
