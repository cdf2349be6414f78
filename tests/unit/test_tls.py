"""Unit tests for dockyard.auth.pki, dockyard.auth.tls and `dockyard tls init`.

No sockets: TLS handshakes run between two `ssl.MemoryBIO` pairs in this process.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.auth.pki import (
    BACKDATE,
    Issued,
    PKIError,
    create_ca,
    issue_server_certificate,
    load_ca,
    parse_hosts,
    write_file,
)
from dockyard.auth.tls import ServerTLS, TLSError, build_server_tls
from dockyard.cli.main import cli
from dockyard.config import TLSConfig

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


# --- helpers ------------------------------------------------------------------------------


def _write_pair(directory: Path, issued: Issued, name: str = "registry") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    write_file(cert, issued.certificate_pem(), 0o644)
    write_file(key, issued.key_pem(), 0o600)
    return cert, key


def _client_certificate(ca: Issued, name: str = "ci-bot") -> Issued:
    """A TLS client certificate (clientAuth) signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _client_context(ca_file: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    # What Python 3.13 clients check by default: the certificates must pass it too.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if client is not None:
        context.load_cert_chain(*client)
    return context


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, hostname: str = "localhost"
) -> x509.Certificate:
    """Run a TLS handshake in memory; returns the certificate the server presented."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values()), done
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def ca() -> Issued:
    return create_ca()


@pytest.fixture
def ca_file(tmp_path: Path, ca: Issued) -> Path:
    path = tmp_path / "ca.crt"
    write_file(path, ca.certificate_pem(), 0o644)
    return path


def _server_pair(tmp_path: Path, ca: Issued, hosts: tuple[str, ...] = ("localhost",)) -> Issued:
    issued = issue_server_certificate(ca, parse_hosts(hosts))
    _write_pair(tmp_path, issued)
    return issued


# --- host names ---------------------------------------------------------------------------


def test_parse_hosts_splits_names_and_addresses_in_order() -> None:
    hosts = parse_hosts(
        [
            "10.0.0.5",
            "Registry.Registry.svc.cluster.local.",
            "localhost",
            "[fd00::1]",
            "::1",
            "*.example.com",
            "10.0.0.5",
            "localhost",
        ]
    )
    assert hosts.dns_names == ("registry.registry.svc.cluster.local", "localhost", "*.example.com")
    assert hosts.ip_addresses == (
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("fd00::1"),
        ipaddress.ip_address("::1"),
    )
    assert hosts.all() == [
        "10.0.0.5",
        "registry.registry.svc.cluster.local",
        "localhost",
        "fd00::1",
        "::1",
        "*.example.com",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://registry.example.com", "not a URL"),
        ("registry.example.com:5000", "without a port"),
        ("10.0.0.5:30500", "without a port"),
        ("[registry]", "IPv6 address goes in brackets"),
        ("bad_name", "not a valid DNS name"),
        ("-leading.example.com", "not a valid DNS name"),
        ("a..b", "not a valid DNS name"),
        ("*", "not a valid DNS name"),
        ("x" * 64 + ".example.com", "not a valid DNS name"),
    ],
)
def test_parse_hosts_refuses(value: str, message: str) -> None:
    with pytest.raises(PKIError, match=message):
        parse_hosts([value])


def test_parse_hosts_needs_one() -> None:
    with pytest.raises(PKIError, match="at least one"):
        parse_hosts([])


# --- the CA -------------------------------------------------------------------------------


def test_ca_is_a_constrained_self_signed_ca() -> None:
    ca = create_ca(days=100, now=NOW)
    cert = ca.certificate
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    assert not usage.value.key_encipherment
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=100)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(common_name).startswith("Dockyard internal CA ")
    # Two CAs never share a subject (trust stores match issuers by name).
    assert create_ca().certificate.subject != cert.subject


def test_ca_needs_a_day() -> None:
    with pytest.raises(PKIError):
        create_ca(days=0)


# --- server certificates ------------------------------------------------------------------


def test_server_certificate_names_usage_and_validity() -> None:
    ca = create_ca(now=NOW)
    hosts = parse_hosts(["10.0.0.5", "registry.registry.svc.cluster.local", "localhost", "::1"])
    server = issue_server_certificate(ca, hosts, days=30, now=NOW)
    cert = server.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.issuer == ca.certificate.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "registry.registry.svc.cluster.local",
        "localhost",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "10.0.0.5"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=30)
    assert cert.serial_number != ca.certificate.serial_number
    assert server.key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_server_certificate_verifies_like_a_tls_client() -> None:
    """cryptography's RFC 5280 path validation, the way a client checks the server."""
    ca = create_ca()
    server = issue_server_certificate(ca, parse_hosts(["127.0.0.1", "localhost"]))
    store = verification.Store([ca.certificate])
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = verification.PolicyBuilder().store(store).build_server_verifier(name)
        chain = verifier.verify(server.certificate, [])
        assert chain[-1] == ca.certificate
    for wrong in (x509.DNSName("other.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))):
        verifier = verification.PolicyBuilder().store(store).build_server_verifier(wrong)
        with pytest.raises(verification.VerificationError):
            verifier.verify(server.certificate, [])
    other = verification.Store([create_ca().certificate])
    verifier = (
        verification.PolicyBuilder().store(other).build_server_verifier(x509.DNSName("localhost"))
    )
    with pytest.raises(verification.VerificationError):
        verifier.verify(server.certificate, [])


def test_server_certificate_never_outlives_its_ca() -> None:
    ca = create_ca(days=10, now=NOW)
    server = issue_server_certificate(ca, parse_hosts(["localhost"]), days=365, now=NOW)
    assert server.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_expired_ca_signs_nothing() -> None:
    ca = create_ca(days=1, now=NOW)
    with pytest.raises(PKIError, match="expired"):
        issue_server_certificate(
            ca, parse_hosts(["localhost"]), now=NOW + datetime.timedelta(days=2)
        )


def test_load_ca_round_trip_and_refusals(tmp_path: Path) -> None:
    ca = create_ca()
    cert, key = _write_pair(tmp_path, ca, "ca")
    loaded = load_ca(cert, key)
    assert loaded.certificate == ca.certificate
    server = issue_server_certificate(loaded, parse_hosts(["localhost"]))
    server.certificate.verify_directly_issued_by(ca.certificate)

    other_cert, other_key = _write_pair(tmp_path, create_ca(), "other")
    with pytest.raises(PKIError, match="is not the private key"):
        load_ca(cert, other_key)
    leaf_cert, leaf_key = _write_pair(tmp_path, server, "leaf")
    with pytest.raises(PKIError, match="not a CA certificate"):
        load_ca(leaf_cert, leaf_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(PKIError, match="cannot read the CA certificate"):
        load_ca(garbage, key)
    with pytest.raises(PKIError, match="cannot read the CA key"):
        load_ca(cert, garbage)
    assert other_cert.exists()


def test_write_file_sets_the_mode_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registry.key"
    write_file(path, b"one", 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_file(path, b"two", 0o600)
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["registry.key"]


# --- dockyard tls init --------------------------------------------------------------------


def test_tls_init_writes_a_ca_and_a_server_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = CliRunner().invoke(
        cli,
        [
            *("tls", "init", "--host", "10.0.0.5", "--host", "dockyard.registry.svc.cluster.local"),
            *("--out", str(out), "--days", "90", "--port", "30500"),
        ],
    )
    assert result.exit_code == 0, result.output
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "registry.crt": 0o644, "registry.key": 0o600}
    ca = load_ca(out / "ca.crt", out / "ca.key")
    server = x509.load_pem_x509_certificate((out / "registry.crt").read_bytes())
    server.verify_directly_issued_by(ca.certificate)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["dockyard.registry.svc.cluster.local"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    left = server.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=89) < left <= datetime.timedelta(days=90)
    key = serialization.load_pem_private_key((out / "registry.key").read_bytes(), None)
    assert key.public_key() == server.public_key()
    # How to distribute the CA: K3s, Kubernetes, containers-image clients, docker.
    output = result.output
    assert '"10.0.0.5:30500":\n      tls:\n        ca_file: /etc/rancher/k3s/' in output
    assert "dockyard k3s registries --endpoint https://10.0.0.5:30500 --ca-file" in output
    assert f"kubectl -n registry create secret tls dockyard-tls --cert={out}/registry.crt" in output
    assert "--tls-secret dockyard-tls" in output
    assert "/etc/containers/certs.d/10.0.0.5:30500/ca.crt" in output
    assert "/etc/containers/certs.d/dockyard.registry.svc.cluster.local:30500/ca.crt" in output
    assert "--cert-dir" in output
    assert "/etc/docker/certs.d/10.0.0.5:30500/ca.crt" in output


def test_tls_init_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    runner = CliRunner()
    args = ["tls", "init", "--host", "localhost", "--out", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    before = (out / "ca.key").read_bytes()
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "already exist" in result.output and "--force" in result.output
    assert (out / "ca.key").read_bytes() == before
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    assert (out / "ca.key").read_bytes() != before


def test_tls_init_reuses_a_ca(tmp_path: Path) -> None:
    runner = CliRunner()
    first = tmp_path / "first"
    assert (
        runner.invoke(cli, ["tls", "init", "--host", "localhost", "--out", str(first)]).exit_code
        == 0
    )
    renewed = tmp_path / "renewed"
    result = runner.invoke(
        cli,
        [
            *("tls", "init", "--host", "127.0.0.1", "--out", str(renewed)),
            *("--ca-cert", str(first / "ca.crt"), "--ca-key", str(first / "ca.key")),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in renewed.iterdir()) == ["registry.crt", "registry.key"]
    ca = x509.load_pem_x509_certificate((first / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((renewed / "registry.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    assert f"install -D -m 0644 {first}/ca.crt /etc/rancher/k3s/dockyard-ca.crt" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "localhost:5000"], "without a port"),
        (["--host", "localhost", "--ca-cert", "{ca}"], "--ca-cert and --ca-key together"),
        (["--host", "localhost", "--ca-cert", "{leaf}", "--ca-key", "{leafkey}"], "not a CA"),
    ],
)
def test_tls_init_refuses(tmp_path: Path, args: list[str], message: str) -> None:
    ca = create_ca()
    _write_pair(tmp_path, ca, "ca")
    _write_pair(tmp_path, issue_server_certificate(ca, parse_hosts(["x"])), "leaf")
    paths = {
        "{ca}": str(tmp_path / "ca.crt"),
        "{leaf}": str(tmp_path / "leaf.crt"),
        "{leafkey}": str(tmp_path / "leaf.key"),
    }
    out = tmp_path / "out"
    args = [paths.get(a, a) for a in args]
    result = CliRunner().invoke(cli, ["tls", "init", "--out", str(out), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not out.exists()


# --- serving: build_server_tls ------------------------------------------------------------


def test_no_certificate_means_plain_http() -> None:
    assert build_server_tls(TLSConfig()) is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TLSConfig(key="/k"), "http.tls.key is set but http.tls.certificate is not"),
        (TLSConfig(clientcas=["/ca"]), "http.tls.clientcas needs http.tls.certificate"),
        (TLSConfig(certificate="/c"), "http.tls.certificate is set but http.tls.key is not"),
    ],
)
def test_incomplete_tls_settings_are_refused(config: TLSConfig, message: str) -> None:
    with pytest.raises(TLSError, match=message):
        build_server_tls(config)


def test_serves_the_certificate_with_secure_defaults(
    tmp_path: Path, ca: Issued, ca_file: Path
) -> None:
    issued = _server_pair(tmp_path, ca, ("localhost", "127.0.0.1"))
    tls = build_server_tls(
        TLSConfig(certificate=str(tmp_path / "registry.crt"), key=str(tmp_path / "registry.key"))
    )
    assert tls is not None
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.context.verify_mode == ssl.CERT_NONE
    assert tls.context.options & ssl.OP_NO_COMPRESSION
    ciphers = tls.context.get_ciphers()
    assert ciphers
    for cipher in ciphers:  # forward secret and authenticated encryption, nothing else
        assert cipher["aead"], cipher
        assert cipher["kea"] in ("kx-ecdhe", "kx-any"), cipher
    seen = _handshake(tls.context, _client_context(ca_file))
    assert seen.serial_number == issued.certificate.serial_number
    assert _handshake(tls.context, _client_context(ca_file), "127.0.0.1") == seen
    # A client that does not trust the CA, or asks for a name not in the certificate: refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.context, ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.context, _client_context(ca_file), "registry.example.com")
    # TLS 1.1 is refused by the server even when a client offers only that.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(ca_file)
    old.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(tls.context, old)
    assert refused.value.reason == "UNSUPPORTED_PROTOCOL"  # the server's answer, not the client's


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "registry.key").unlink(), "cannot load"),
        (lambda d: (d / "registry.crt").write_text("garbage\n"), "holds no valid PEM certificate"),
        (lambda d: (d / "registry.key").write_text("garbage\n"), "holds no valid PEM private key"),
        (
            lambda d: (d / "registry.key").write_bytes(
                ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
            "is not the key of",
        ),
        (
            lambda d: (d / "registry.key").write_bytes(
                ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            ),
            "is encrypted",
        ),
    ],
)
def test_unusable_files_stop_the_server_with_the_key_named(
    tmp_path: Path, ca: Issued, break_it: Callable[[Path], object], message: str
) -> None:
    _server_pair(tmp_path, ca)
    break_it(tmp_path)
    with pytest.raises(TLSError, match=message) as raised:
        build_server_tls(
            TLSConfig(
                certificate=str(tmp_path / "registry.crt"), key=str(tmp_path / "registry.key")
            )
        )
    assert "http.tls." in str(raised.value)


def test_client_certificates_are_required_with_clientcas(
    tmp_path: Path, ca: Issued, ca_file: Path
) -> None:
    _server_pair(tmp_path, ca)
    client_ca = create_ca()
    client_ca_file = tmp_path / "clients-ca.crt"
    write_file(client_ca_file, client_ca.certificate_pem(), 0o644)
    tls = build_server_tls(
        TLSConfig(
            certificate=str(tmp_path / "registry.crt"),
            key=str(tmp_path / "registry.key"),
            clientcas=[str(client_ca_file)],
        )
    )
    assert tls is not None
    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLError):
        _handshake(tls.context, _client_context(ca_file))
    good = _write_pair(tmp_path, _client_certificate(client_ca), "client")
    _handshake(tls.context, _client_context(ca_file, good))
    # Signed by the server's CA, which is not one of the client CAs: refused.
    stranger = _write_pair(tmp_path, _client_certificate(ca), "stranger")
    with pytest.raises(ssl.SSLError):
        _handshake(tls.context, _client_context(ca_file, stranger))


def test_unreadable_client_ca_is_named(tmp_path: Path, ca: Issued) -> None:
    _server_pair(tmp_path, ca)
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(TLSError, match=r"http\.tls\.clientcas\[1\]"):
        build_server_tls(
            TLSConfig(
                certificate=str(tmp_path / "registry.crt"),
                key=str(tmp_path / "registry.key"),
                clientcas=[str(tmp_path / "registry.crt"), str(tmp_path / "empty.pem")],
            )
        )


# --- serving: reload ----------------------------------------------------------------------


def _server_tls(tmp_path: Path) -> ServerTLS:
    return ServerTLS(tmp_path / "registry.crt", tmp_path / "registry.key", interval=0.01)


def test_renewed_certificate_is_loaded_into_the_same_context(
    tmp_path: Path, ca: Issued, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _server_pair(tmp_path, ca)
    tls = _server_tls(tmp_path)
    context = tls.context
    assert not tls.reload_if_changed()
    new = _server_pair(tmp_path, ca)
    caplog.set_level(logging.INFO, "dockyard.tls")
    assert not tls.reload_if_changed()  # files just changed: wait until they settle
    assert _handshake(context, _client_context(ca_file)).serial_number == (
        old.certificate.serial_number
    )
    assert tls.reload_if_changed()
    assert tls.context is context
    assert _handshake(context, _client_context(ca_file)).serial_number == (
        new.certificate.serial_number
    )
    assert not tls.reload_if_changed()
    reloaded = [r for r in caplog.records if r.getMessage() == "tls certificate reloaded"]
    assert len(reloaded) == 1
    assert reloaded[0].__dict__["fields"]["serial"] == format(new.certificate.serial_number, "x")


def test_bad_renewal_keeps_the_previous_certificate(
    tmp_path: Path, ca: Issued, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _server_pair(tmp_path, ca)
    tls = _server_tls(tmp_path)
    caplog.set_level(logging.INFO, "dockyard.tls")
    (tmp_path / "registry.crt").write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    for _ in range(4):
        assert not tls.reload_if_changed()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per version of the files, not every few seconds
    assert "still serving the previous certificate" in errors[0].getMessage()
    assert _handshake(tls.context, _client_context(ca_file)).serial_number == (
        old.certificate.serial_number
    )
    # A certificate whose key has not been written yet: also kept out.
    new = issue_server_certificate(ca, parse_hosts(["localhost"]))
    write_file(tmp_path / "registry.crt", new.certificate_pem(), 0o644)
    assert not tls.reload_if_changed()
    assert not tls.reload_if_changed()
    assert _handshake(tls.context, _client_context(ca_file)).serial_number == (
        old.certificate.serial_number
    )
    write_file(tmp_path / "registry.key", new.key_pem(), 0o600)
    assert not tls.reload_if_changed()
    assert tls.reload_if_changed()
    assert _handshake(tls.context, _client_context(ca_file)).serial_number == (
        new.certificate.serial_number
    )


def test_watch_reloads_in_the_background(tmp_path: Path, ca: Issued, ca_file: Path) -> None:
    _server_pair(tmp_path, ca)
    tls = _server_tls(tmp_path)

    async def scenario() -> int:
        tls.start()
        new = _server_pair(tmp_path, ca)
        for _ in range(500):
            await asyncio.sleep(0.01)
            seen = _handshake(tls.context, _client_context(ca_file)).serial_number
            if seen == new.certificate.serial_number:
                break
        await tls.stop()
        return seen

    assert (
        asyncio.run(scenario())
        == x509.load_pem_x509_certificate((tmp_path / "registry.crt").read_bytes()).serial_number
    )
