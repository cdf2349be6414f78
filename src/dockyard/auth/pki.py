"""An internal CA and the server certificates it signs (`dockyard tls init`).

Keys are ECDSA P-256: every client that pulls images (Go's crypto/tls in containerd, podman
and skopeo; OpenSSL) accepts them, and they are small and fast. Certificates carry what
those clients check: subjectAltNames (Go ignores the common name), serverAuth, and a CA
with `basicConstraints: CA:TRUE, pathlen:0`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks on edge nodes drift; a certificate must not start in their future.
BACKDATE = datetime.timedelta(minutes=5)
DEFAULT_CA_DAYS = 3650
DEFAULT_SERVER_DAYS = 365

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PKIError(Exception):
    """A host name, CA or key that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Hosts:
    """The subjectAltNames of a server certificate, split the way X.509 stores them."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    given: tuple[str, ...]  # every name and address, normalized, in the order given

    def all(self) -> list[str]:
        """Every name and address (as text), in the order given."""
        return list(self.given)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def parse_hosts(values: Sequence[str]) -> Hosts:
    """Split names and IP addresses (`[::1]` allowed); refuse URLs, ports and bad names."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    given: list[str] = []
    for raw in values:
        value = raw.strip()
        bracketed = value.startswith("[") and value.endswith("]")
        try:
            ip = ipaddress.ip_address(value[1:-1] if bracketed else value)
        except ValueError:
            if bracketed:
                raise PKIError(f"{raw!r}: only an IPv6 address goes in brackets") from None
            name = _dns_name(raw, value)
            if name not in dns:
                dns.append(name)
                given.append(name)
        else:
            if ip not in ips:
                ips.append(ip)
                given.append(str(ip))
    if not dns and not ips:
        raise PKIError("give at least one host name or IP address")
    return Hosts(tuple(dns), tuple(ips), tuple(given))


def _dns_name(raw: str, value: str) -> str:
    if "://" in value or "/" in value:
        raise PKIError(f"{raw!r}: give a host name or IP address, not a URL")
    if ":" in value:
        raise PKIError(f"{raw!r}: give the host without a port (certificates do not name ports)")
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # one leading wildcard label, as browsers and Go accept it
    if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise PKIError(f"{raw!r} is not a valid DNS name or IP address")
    return name


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def create_ca(
    days: int = DEFAULT_CA_DAYS,
    common_name: str | None = None,
    now: datetime.datetime | None = None,
) -> Issued:
    """A new self-signed CA that may sign server certificates only (pathlen 0)."""
    if days < 1:
        raise PKIError("a CA must be valid for at least one day")
    now = now or _now()
    key = _new_key()
    # A random suffix keeps two Dockyard CAs apart in a trust store that matches by name.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dockyard"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, common_name or f"Dockyard internal CA {secrets.token_hex(4)}"
            ),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def issue_server_certificate(
    ca: Issued,
    hosts: Hosts,
    days: int = DEFAULT_SERVER_DAYS,
    now: datetime.datetime | None = None,
) -> Issued:
    """A server certificate for `hosts`, signed by `ca`; it never outlives the CA."""
    if days < 1:
        raise PKIError("a certificate must be valid for at least one day")
    now = now or _now()
    not_after = min(now + datetime.timedelta(days=days), ca.certificate.not_valid_after_utc)
    if not_after <= now:
        raise PKIError("the CA has expired: create a new one")
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in hosts.dns_names]
    sans += [x509.IPAddress(ip) for ip in hosts.ip_addresses]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts.all()[0])])
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(certificate, key)


def load_ca(certificate_path: Path, key_path: Path) -> Issued:
    """An existing CA (PEM certificate and unencrypted PEM key) to sign with."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PKIError(f"cannot read the CA certificate {certificate_path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PKIError(f"cannot read the CA key {key_path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{key_path}: only ECDSA CA keys are supported (as tls init creates)")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.value.ca:
        raise PKIError(f"{certificate_path} is not a CA certificate (basicConstraints CA:FALSE)")
    if key.public_key().public_numbers() != _ec_public(certificate).public_numbers():
        raise PKIError(f"{key_path} is not the private key of {certificate_path}")
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise PKIError(f"{certificate_path} has no subjectKeyIdentifier") from None
    return Issued(certificate, key)


def _ec_public(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PKIError("the CA certificate does not hold an ECDSA key")
    return public


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically; the file has `mode` from the moment it appears (keys: 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
