"""Serving HTTPS: Distribution's `http.tls` keys, client certificates, certificate reload.

Renewed certificates (cert-manager, a re-run of `dockyard tls init`, a Secret update that
kubelet swaps in with a symlink) are picked up without a restart: a background task
compares the files' identity (device, inode, size, mtime) every few seconds and, when they
change, loads them again into the same `SSLContext`. OpenSSL copies the certificate into
each connection when it is accepted, so only new handshakes see the new certificate and
open connections carry on undisturbed. Changed files are loaded once they have stayed the
same for one check (a renewal that writes the certificate, then the key, is not caught in
between), and first into a scratch context: a broken file or a pair that does not match is
reported and the previous certificate stays in service.

Client CAs (`clientcas`) are read at start only: OpenSSL can add trusted CAs to a live
context but never remove one, so changing them takes a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dockyard.config import ConfigError, TLSConfig

log = logging.getLogger("dockyard.tls")

DEFAULT_RELOAD_INTERVAL = 2.0
EXPIRY_WARNING = datetime.timedelta(days=14)
TLS12_CIPHERS = "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_FileId = tuple[int, int, int, int] | None


class TLSError(ConfigError):
    """A TLS setting whose files cannot be used; the message names the key and the file."""


def _new_context() -> ssl.SSLContext:
    """A server context with secure defaults: TLS 1.2 or newer, forward-secret AEAD only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2 suites as Mozilla's "intermediate" profile has them (TLS 1.3's are all AEAD).
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # aiohttp speaks HTTP/1.1 only; saying so spares clients that offer h2 a guess.
    context.set_alpn_protocols(["http/1.1"])
    return context


def _no_password() -> bytes:
    # Never let OpenSSL prompt on a terminal for an encrypted key; the load then fails.
    return b""


def _file_id(path: Path) -> _FileId:
    try:
        st = os.stat(path)  # follows symlinks: a Secret's ..data swap changes the inode
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _describe(path: Path) -> tuple[dict[str, Any], datetime.datetime | None]:
    """Log fields for the (first) certificate in a PEM file, and when it expires."""
    from cryptography import x509  # only with TLS on: not loaded by a plain-HTTP registry

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return {"certificate": str(path)}, None
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n.value) for n in sans.value]
    except x509.ExtensionNotFound:
        names = []
    not_after = certificate.not_valid_after_utc
    fields = {
        "certificate": str(path),
        "serial": format(certificate.serial_number, "x"),
        "not_after": not_after.isoformat(),
        "names": names,
    }
    return fields, not_after


class ServerTLS:
    """The server's `SSLContext` and the task that reloads its certificate when renewed."""

    def __init__(
        self,
        certificate: Path,
        key: Path,
        client_cas: Sequence[Path] = (),
        interval: float = DEFAULT_RELOAD_INTERVAL,
    ) -> None:
        self.certificate = certificate
        self.key = key
        self.client_cas = tuple(client_cas)
        self.interval = interval
        self.context = _new_context()
        for index, path in enumerate(self.client_cas):
            try:
                self.context.load_verify_locations(cafile=path)
            except OSError as exc:
                raise TLSError(
                    f"http.tls.clientcas[{index}]: cannot load {path}: {_reason(exc)}"
                ) from None
        if self.client_cas:
            # mTLS: the handshake fails without a certificate signed by one of these CAs.
            self.context.verify_mode = ssl.CERT_REQUIRED
            log.info(
                "tls client certificates required",
                extra={"fields": {"clientcas": [str(p) for p in self.client_cas]}},
            )
        self._loaded: tuple[_FileId, _FileId] | None = self._file_ids()
        self._load(self.context)
        self._failed: tuple[_FileId, _FileId] | None = None
        self._settling: tuple[_FileId, _FileId] | None = None
        self._task: asyncio.Task[None] | None = None
        self._log_loaded("tls certificate loaded")

    def _file_ids(self) -> tuple[_FileId, _FileId]:
        return _file_id(self.certificate), _file_id(self.key)

    def _load(self, context: ssl.SSLContext) -> None:
        try:
            _check_pem(self.certificate, self.key)
            context.load_cert_chain(self.certificate, self.key, password=_no_password)
        except OSError as exc:
            if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
                raise TLSError(
                    f"http.tls.key: {self.key} is not the key of {self.certificate}"
                ) from None
            raise TLSError(
                f"http.tls.certificate/http.tls.key: cannot load {self.certificate} with "
                f"{self.key}: {_reason(exc)}"
            ) from None

    def _log_loaded(self, message: str) -> None:
        fields, not_after = _describe(self.certificate)
        log.info(message, extra={"fields": fields})
        if not_after is None:
            return
        left = not_after - datetime.datetime.now(datetime.UTC)
        if left <= datetime.timedelta(0):
            log.warning("tls certificate has expired", extra={"fields": fields})
        elif left < EXPIRY_WARNING:
            log.warning("tls certificate expires soon", extra={"fields": fields})

    def reload_if_changed(self) -> bool:
        """Load the certificate and key again if their files changed; True if it did.

        Changed files are loaded once they look the same in two consecutive calls, so a
        renewal that writes the certificate and then the key (`cp`, `install`) is not
        caught between the two.
        """
        ids = self._file_ids()
        if ids in (self._loaded, self._failed):
            self._settling = None
            return False
        if ids != self._settling:
            self._settling = ids
            return False
        self._settling = None
        try:
            self._load(_new_context())  # validate first: a bad pair never reaches the server
        except TLSError as exc:
            # Reported once per version of the files; a fixed file is tried again.
            self._failed = ids
            log.error(
                "tls certificate reload failed: still serving the previous certificate",
                extra={"fields": {"error": str(exc)}},
            )
            return False
        try:
            self._load(self.context)
        except TLSError as exc:
            # Only if the files changed again between the two loads: retry next round.
            self._loaded = None
            log.error("tls certificate reload failed", extra={"fields": {"error": str(exc)}})
            return False
        # The ids taken before loading: a change during the load is seen next round.
        self._loaded = ids
        self._failed = None
        self._log_loaded("tls certificate reloaded")
        return True

    async def watch(self) -> None:
        """Check the files every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(self.interval)
            self.reload_if_changed()

    def start(self) -> None:
        """Run `watch()` in the background (call inside the event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self.watch(), name="tls-reload")

    async def stop(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _check_pem(certificate: Path, key: Path) -> None:
    """Say what is wrong with the files more clearly than OpenSSL's "PEM lib" would."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificates(certificate.read_bytes())
    except ValueError:
        raise TLSError(
            f"http.tls.certificate: {certificate} holds no valid PEM certificate"
        ) from None
    try:
        serialization.load_pem_private_key(key.read_bytes(), password=None)
    except TypeError:
        raise TLSError(f"http.tls.key: {key} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSError(f"http.tls.key: {key} holds no valid PEM private key") from None


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def build_server_tls(tls: TLSConfig, interval: float = DEFAULT_RELOAD_INTERVAL) -> ServerTLS | None:
    """HTTPS settings from `http.tls`, or None for plain HTTP (no certificate configured)."""
    if not tls.certificate:
        if tls.key:
            raise TLSError("http.tls.key is set but http.tls.certificate is not")
        if tls.clientcas:
            raise TLSError("http.tls.clientcas needs http.tls.certificate and http.tls.key")
        return None
    if not tls.key:
        raise TLSError("http.tls.certificate is set but http.tls.key is not")
    return ServerTLS(
        Path(tls.certificate),
        Path(tls.key),
        [Path(p) for p in tls.clientcas],
        interval=interval,
    )
