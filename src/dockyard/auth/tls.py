"""Serving HTTPS: Distribution's `http.tls` keys, client certificates, certificate reload.

Renewed certificates (cert-manager, a re-run of `dockyard tls init`, a Secret update that
kubelet swaps in with a symlink) are picked up without a restart: a background task
compares the files' identity (device, inode, size, mtime) every few seconds and, when they
change, loads them again into the same `SSLContext`. OpenSSL copies the certificate into
each connection when it is accepted, so only new handshakes see the new certificate and
open connections carry on undisturbed. A new pair is first loaded into a scratch context:
a broken or half-written file is reported and the previous certificate stays in service.
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

from cryptography import x509

from dockyard.config import ConfigError, TLSConfig

log = logging.getLogger("dockyard.tls")

DEFAULT_RELOAD_INTERVAL = 2.0
EXPIRY_WARNING = datetime.timedelta(days=14)

_FileId = tuple[int, int, int, int] | None


class TLSError(ConfigError):
    """A TLS setting whose files cannot be used; the message names the key and the file."""


def _new_context() -> ssl.SSLContext:
    """A server context with secure defaults: TLS 1.2 or newer, Python's cipher choice."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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


def _describe(path: Path) -> dict[str, Any]:
    """Log fields for the (first) certificate in a PEM file: serial, expiry, names."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return {"certificate": str(path)}
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n.value) for n in sans.value]
    except x509.ExtensionNotFound:
        names = []
    return {
        "certificate": str(path),
        "serial": format(certificate.serial_number, "x"),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "names": names,
    }


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
        self._loaded = self._file_ids()
        self._load(self.context)
        self._failed: tuple[_FileId, _FileId] | None = None
        self._task: asyncio.Task[None] | None = None
        self._log_loaded("tls certificate loaded")

    def _file_ids(self) -> tuple[_FileId, _FileId]:
        return _file_id(self.certificate), _file_id(self.key)

    def _load(self, context: ssl.SSLContext) -> None:
        try:
            if b"ENCRYPTED" in self.key.read_bytes():
                raise TLSError(f"http.tls.key: {self.key} is encrypted; give an unencrypted key")
            context.load_cert_chain(self.certificate, self.key, password=_no_password)
        except OSError as exc:
            raise TLSError(
                f"http.tls.certificate/http.tls.key: cannot load {self.certificate} with "
                f"{self.key}: {_reason(exc)}"
            ) from None

    def _log_loaded(self, message: str) -> None:
        fields = _describe(self.certificate)
        log.info(message, extra={"fields": fields})
        if "not_after" in fields:
            left = datetime.datetime.fromisoformat(fields["not_after"]) - datetime.datetime.now(
                datetime.UTC
            )
            if left < EXPIRY_WARNING:
                log.warning(
                    "tls certificate expires soon" if left.total_seconds() > 0 else
                    "tls certificate has expired",
                    extra={"fields": fields},
                )

    def reload_if_changed(self) -> bool:
        """Load the certificate and key again if their files changed; True if it did."""
        ids = self._file_ids()
        if ids == self._loaded or ids == self._failed:
            return False
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
            self._loaded = None, None
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


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def build_server_tls(
    tls: TLSConfig, interval: float = DEFAULT_RELOAD_INTERVAL
) -> ServerTLS | None:
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
