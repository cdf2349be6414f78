"""A Docker-style token server (the `realm` of a Bearer challenge) for Distribution 2.8.

`GET /token?service=...&scope=repository:<name>:<actions>` with HTTP Basic credentials
answers `{"token", "access_token", "expires_in", "issued_at"}`. Tokens are RS256 JWTs whose
header carries the signing certificate (`x5c`, base64 DER); Distribution's
`auth.token.rootcertbundle` names the same self-signed certificate, so it verifies them
(`registry/auth/token`: issuer, audience = service, exp/nbf with 60 s leeway, signature by
the leaf certificate's key, and the `access` claim for the repository and action).

Every token request is recorded in `requests`, so tests can see how often a client asks.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.integration.support.server import free_port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    account: str | None  # the Basic-auth user name, None without credentials
    scopes: tuple[str, ...]
    service: str
    granted: bool


class TokenServer:
    """Issues JWTs that Distribution's token auth accepts, to users with a right password."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str],
        service: str = "test-registry",
        issuer: str = "test-issuer",
        lifetime: int = 300,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.lifetime = lifetime
        self.port = port or free_port()
        self.cert_path = workdir / "token-signing-cert.pem"
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = self._self_signed_certificate()
        self._cert_der_b64 = base64.b64encode(
            self._cert.public_bytes(serialization.Encoding.DER)
        ).decode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def distribution_config(self) -> str:
        """The `auth:` section of a Distribution config.yml that trusts this server."""
        return (
            "auth:\n"
            "  token:\n"
            f"    realm: {self.realm}\n"
            f"    service: {self.service}\n"
            f"    issuer: {self.issuer}\n"
            f"    rootcertbundle: {self.cert_path}\n"
        )

    def _self_signed_certificate(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    # -- tokens ---------------------------------------------------------------------------

    def issue(self, account: str, scopes: list[str]) -> str:
        """A signed JWT granting `scopes` (`repository:<name>:<a,b>`) to `account`."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not kind or not name:
                continue
            access.append(
                {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}
            )
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._cert_der_b64]}
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def _authenticate(self, header: str | None) -> str | None:
        """The user name of valid Basic credentials, else None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if self.users.get(user) == password else None

    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- server ---------------------------------------------------------------------------

    def start(self) -> TokenServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        tokens = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="token"')
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self._reply(404, {"error": "not found"})
                    return
                query = parse_qs(url.query)
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                service = (query.get("service") or [""])[0]
                account = tokens._authenticate(self.headers.get("Authorization"))
                granted = account is not None and service == tokens.service
                with tokens._lock:
                    tokens.requests.append(TokenRequest(account, tuple(scopes), service, granted))
                if not granted:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                assert account is not None
                token = tokens.issue(account, scopes)
                self._reply(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": tokens.lifetime,
                        "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
                    },
                )

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
