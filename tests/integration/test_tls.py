"""Dockyard over HTTPS with a CA from `dockyard tls init`: real clients, verification on.

Every client gets the generated CA and keeps certificate verification on (no
`--tls-verify=false`, no `insecure_skip_verify`): skopeo (`--src-cert-dir` /
`--dest-cert-dir`), podman (`--cert-dir`), and containerd as K3s configures it (a
`hosts.toml` whose Dockyard host names the CA with `ca`, the upstream `server` a dead
loopback port), through `ctr` and through the kubelet's CRI call. Clients without the CA are
refused. Renewed certificate files are served to new connections without a restart, and
with `http.tls.clientcas` only clients holding a certificate from that CA get in.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.support import cri
from tests.integration.support.containerd import Containerd, dead_endpoint
from tests.integration.support.images import build_image, run
from tests.integration.support.tls import TLSDockyard

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TIMEOUT = 120.0
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())


# --- a Dockyard serving HTTPS ---------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """ca.crt, ca.key, registry.crt, registry.key from `dockyard tls init`."""
    out = tmp_path / "pki"
    _tls_init(out)
    for name in ("ca.key", "registry.key"):
        assert (out / name).stat().st_mode & 0o777 == 0o600
    return out


def _tls_init(out: Path, *extra: str) -> str:
    return run(
        sys.executable,
        "-m",
        "dockyard",
        "tls",
        "init",
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
        "--out",
        out,
        *extra,
    )


@pytest.fixture
def cert_dir(tmp_path: Path, pki: Path) -> Path:
    """A containers-image cert directory: the CA only (a lone ca.key would be an error)."""
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(pki / "ca.crt", directory / "ca.crt")
    return directory


ServerFactory = Callable[..., TLSDockyard]


@pytest.fixture
def tls_dockyard_factory(tmp_path: Path, pki: Path) -> Iterator[ServerFactory]:
    """Start HTTPS Dockyards (certificate files copied to serving/); all stopped at the end."""
    started: list[TLSDockyard] = []

    def start(name: str = "dockyard", clientcas: list[Path] | None = None) -> TLSDockyard:
        serving = tmp_path / f"{name}-serving"
        serving.mkdir()
        for file in ("registry.crt", "registry.key"):
            shutil.copy2(pki / file, serving / file)
        tls: dict[str, Any] = {
            "certificate": str(serving / "registry.crt"),
            "key": str(serving / "registry.key"),
        }
        if clientcas:
            tls["clientcas"] = [str(p) for p in clientcas]
        config = tmp_path / f"{name}.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "info"},
                    "storage": {"delete": {"enabled": True}},
                    "http": {"tls": tls},
                }
            )
        )
        server = TLSDockyard(tmp_path / name, config=config)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def tls_dockyard(tls_dockyard_factory: ServerFactory) -> TLSDockyard:
    return tls_dockyard_factory()


@pytest.fixture
def runroots() -> Iterator[Path]:
    """containers-storage refuses a runroot longer than 50 characters: keep it short."""
    with tempfile.TemporaryDirectory(prefix="dy-", dir="/tmp", ignore_cleanup_errors=True) as d:
        yield Path(d)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    daemon = Containerd(tmp_path / "ctd")
    daemon.write_config()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


# --- helpers --------------------------------------------------------------------------------


def _fails(*args: str | Path) -> str:
    """Run a command that must fail; returns stdout and stderr."""
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode != 0, f"{' '.join(map(str, args))} succeeded:\n{result.stdout}"
    return result.stdout + result.stderr


def _client_context(ca: Path | None, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if client is not None:
        context.load_cert_chain(*client)
    return context


def _peer_certificate(
    port: int, ca: Path, hostname: str = "localhost", client: tuple[Path, Path] | None = None
) -> x509.Certificate:
    """A new TLS connection's view of the server certificate (verified against `ca`)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _client_context(ca, client).wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _get(
    port: int, ca: Path | None, path: str = "/v2/", client: tuple[Path, Path] | None = None
) -> int:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=_client_context(ca, client), timeout=10
    )
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _push(layout: Path, tag: str, dest: str, cert_dir: Path) -> str:
    """skopeo copy from an OCI layout to Dockyard over verified TLS; returns the digest."""
    digest_file = layout.parent / f"pushed-{uuid.uuid4().hex}.digest"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=true",
        f"--dest-cert-dir={cert_dir}",
        f"--digestfile={digest_file}",
        f"oci:{layout}:{tag}",
        f"docker://{dest}",
        timeout=TIMEOUT,
    )
    return digest_file.read_text().strip()


def _layout_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return str(desc["digest"])
    raise AssertionError(f"{tag} not in {layout}")


def _layout_json(layout: Path, digest: str) -> Any:
    algorithm, hex_ = digest.split(":", 1)
    return json.loads((layout / "blobs" / algorithm / hex_).read_bytes())


def _issue_client_certificate(
    directory: Path, ca_cert: Path, ca_key: Path, name: str
) -> tuple[Path, Path]:
    """A clientAuth certificate signed by the CA in `ca_cert`/`ca_key` (PEM files)."""
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    issuer_key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.cert", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _refused_handshake(error: str) -> bool:
    """A Go client's report of a server that ended the TLS handshake.

    asyncio closes the connection without flushing OpenSSL's alert, so Go usually sees EOF
    rather than "certificate required". With TLS 1.3 the client's side of the handshake is
    done before the server has checked its certificate, so Go may also take the closed
    connection for an idle one the server dropped ("server closed idle connection"). The
    callers check as well that no request reached the registry.
    """
    return any(
        sign in error
        for sign in (
            "EOF",
            "certificate required",
            "bad certificate",
            "connection reset",
            "server closed idle connection",
        )
    )


def _wait_for_request(server: TLSDockyard, method: str, path: str) -> None:
    deadline = time.monotonic() + 10
    while not any(
        e["method"] == method and e["path"].partition("?")[0] == path for e in server.requests()
    ):
        assert time.monotonic() < deadline, f"{method} {path} not logged:\n{server.log()}"
        time.sleep(0.05)


def _client_ca(directory: Path) -> tuple[Path, Path]:
    """A second CA (from `dockyard tls init`) that signs client certificates."""
    _tls_init(directory)
    return directory / "ca.crt", directory / "ca.key"


def _write_tls_mirror(
    containerd: Containerd,
    dockyard: TLSDockyard,
    ca: Path | None,
    client: tuple[Path, Path] | None = None,
) -> Path:
    """`certs.d/docker.io/hosts.toml` as K3s writes it for an https mirror with a CA file."""
    lines = [
        "# File generated by k3s. DO NOT EDIT.",
        f'server = "{dead_endpoint()}"',
        "",
        f'[host."https://{dockyard.host}/v2"]',
        '  capabilities = ["pull", "resolve"]',
    ]
    if ca is not None:
        lines.append(f'  ca = ["{ca}"]')
    if client is not None:
        lines.append(f'  client = [["{client[0]}", "{client[1]}"]]')
    path = containerd.certs_d / "docker.io" / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _ctr_pull_fails(containerd: Containerd, ref: str) -> str:
    return _fails(
        "ctr",
        "-a",
        containerd.socket,
        "--debug",
        "images",
        "pull",
        "--hosts-dir",
        containerd.certs_d,
        ref,
    )


# --- skopeo -----------------------------------------------------------------------------------


def test_skopeo_push_and_pull_over_verified_tls(
    tls_dockyard: TLSDockyard, cert_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH, {"hello.txt": "over tls\n"})
    expected = _layout_digest(src, "v1")
    # Pushed by IP address (an IP subjectAltName)...
    assert _push(src, "v1", f"{tls_dockyard.host}/tls/skopeo:v1", cert_dir) == expected
    # ...read back by name (a DNS subjectAltName).
    by_name = f"docker://localhost:{tls_dockyard.port}/tls/skopeo"
    info = json.loads(
        run("skopeo", "inspect", "--tls-verify=true", f"--cert-dir={cert_dir}", f"{by_name}:v1")
    )
    assert info["Digest"] == expected
    tags = run("skopeo", "list-tags", "--tls-verify=true", f"--cert-dir={cert_dir}", by_name)
    assert json.loads(tags)["Tags"] == ["v1"]
    back = tmp_path / "back"
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=true",
        f"--src-cert-dir={cert_dir}",
        f"{by_name}:v1",
        f"oci:{back}:v1",
        timeout=TIMEOUT,
    )
    assert _layout_digest(back, "v1") == expected
    manifest = _layout_json(src, expected)
    for layer in manifest["layers"]:
        digest = layer["digest"]
        algorithm, hex_ = digest.split(":", 1)
        assert (back / "blobs" / algorithm / hex_).read_bytes() == (
            src / "blobs" / algorithm / hex_
        ).read_bytes()
    _wait_for_request(tls_dockyard, "GET", "/v2/tls/skopeo/manifests/v1")
    paths = {e["path"] for e in tls_dockyard.requests()}
    assert "/v2/tls/skopeo/manifests/v1" in paths
    assert f"/v2/tls/skopeo/blobs/{manifest['config']['digest']}" in paths


def test_clients_without_the_ca_are_refused(
    tls_dockyard: TLSDockyard, pki: Path, cert_dir: Path, tmp_path: Path, runroots: Path
) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH)
    _push(src, "v1", f"{tls_dockyard.host}/tls/app:v1", cert_dir)
    ref = f"docker://{tls_dockyard.host}/tls/app:v1"
    # The access log line is written after the response: wait for the push's last one.
    _wait_for_request(tls_dockyard, "PUT", "/v2/tls/app/manifests/v1")
    before = len(tls_dockyard.requests())

    # skopeo with the system's CAs only, and with another CA's certificate.
    error = _fails("skopeo", "inspect", "--tls-verify=true", ref)
    assert "x509: certificate signed by unknown authority" in error, error
    other = tmp_path / "other-pki"
    _tls_init(other)
    other_dir = tmp_path / "other-certs"
    other_dir.mkdir()
    shutil.copy(other / "ca.crt", other_dir / "ca.crt")
    error = _fails("skopeo", "inspect", "--tls-verify=true", f"--cert-dir={other_dir}", ref)
    assert "x509: certificate signed by unknown authority" in error, error
    error = _fails(
        "skopeo",
        "copy",
        "--dest-tls-verify=true",
        f"--dest-cert-dir={other_dir}",
        f"oci:{src}:v1",
        f"docker://{tls_dockyard.host}/tls/intruder:v1",
    )
    assert "x509: certificate signed by unknown authority" in error, error

    # podman without a cert dir.
    error = _fails(
        "podman",
        "--root",
        tmp_path / "podman",
        "--runroot",
        runroots / "podman",
        "--storage-driver",
        "vfs",
        "pull",
        "--tls-verify=true",
        f"{tls_dockyard.host}/tls/app:v1",
    )
    assert "x509: certificate signed by unknown authority" in error, error

    # Python's ssl: unknown CA, a name the certificate does not carry, plain HTTP.
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _get(tls_dockyard.port, None)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _peer_certificate(tls_dockyard.port, pki / "ca.crt", hostname="registry.example.com")
    plain = http.client.HTTPConnection("127.0.0.1", tls_dockyard.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.request("GET", "/v2/")
        plain.getresponse()
    plain.close()

    # None of them got a request through; a client with the CA still does.
    assert len(tls_dockyard.requests()) == before
    assert _get(tls_dockyard.port, pki / "ca.crt") == 200
    intruder = f"docker://{tls_dockyard.host}/tls/intruder:v1"
    error = _fails("skopeo", "inspect", "--tls-verify=true", f"--cert-dir={cert_dir}", intruder)
    assert "manifest unknown" in error, error


def test_protocol_versions_and_suites(tls_dockyard: TLSDockyard, pki: Path) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = _client_context(pki / "ca.crt")
        context.minimum_version = context.maximum_version = version
        context.set_alpn_protocols(["h2", "http/1.1"])
        with (
            socket.create_connection(("127.0.0.1", tls_dockyard.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == version.name.replace("_", ".")
            cipher = tls.cipher()
            assert cipher is not None
            assert "GCM" in cipher[0] or "CHACHA20" in cipher[0], cipher
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
    # A TLS 1.2 client that offers only CBC suites finds nothing in common.
    cbc = _client_context(pki / "ca.crt")
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    # (the server ends the handshake; asyncio drops OpenSSL's alert, so the client sees EOF)
    with pytest.raises(ssl.SSLError, match=r"UNEXPECTED_EOF|HANDSHAKE_FAILURE"):
        _peer_certificate_with(tls_dockyard.port, cbc)


def _peer_certificate_with(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


# --- podman -----------------------------------------------------------------------------------


def test_podman_push_and_pull_over_verified_tls(
    tls_dockyard: TLSDockyard, cert_dir: Path, tmp_path: Path, runroots: Path
) -> None:
    def podman(store: str, *args: str | Path) -> str:
        return run(
            "podman",
            "--root",
            tmp_path / store,
            "--runroot",
            runroots / store,
            "--storage-driver",
            "vfs",
            *args,
            timeout=TIMEOUT,
        )

    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH, {"hello.txt": "pushed by podman over tls\n"})
    config = _layout_json(src, _layout_json(src, _layout_digest(src, "v1"))["config"]["digest"])
    podman("a", "pull", f"oci:{src}:v1")
    image_id = json.loads(podman("a", "images", "--format", "json"))[0]["Id"]
    pushed = f"{tls_dockyard.host}/tls/podman:v1"
    podman("a", "push", "--tls-verify=true", f"--cert-dir={cert_dir}", image_id, pushed)

    pulled = f"localhost:{tls_dockyard.port}/tls/podman:v1"
    podman("b", "pull", "--tls-verify=true", f"--cert-dir={cert_dir}", pulled)
    info = json.loads(podman("b", "image", "inspect", pulled))[0]
    assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert info["Config"]["Cmd"] == ["/hello.txt"]
    methods = {(e["method"], e["path"].partition("?")[0]) for e in tls_dockyard.requests()}
    assert ("PUT", "/v2/tls/podman/manifests/v1") in methods
    assert ("GET", "/v2/tls/podman/manifests/v1") in methods


# --- containerd, the way K3s configures it ----------------------------------------------------


def test_containerd_pulls_through_a_tls_mirror_with_the_ca(
    tls_dockyard: TLSDockyard, pki: Path, cert_dir: Path, tmp_path: Path, containerd: Containerd
) -> None:
    name = f"tls-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH)
    digest = _push(src, "v1", f"{tls_dockyard.host}/library/{name}:v1", cert_dir)
    ref = f"docker.io/library/{name}:v1"

    # Without the CA the mirror's certificate is refused (and the dead upstream fails too).
    _write_tls_mirror(containerd, tls_dockyard, ca=None)
    error = _ctr_pull_fails(containerd, ref)
    assert "x509: certificate signed by unknown authority" in error, error
    assert ref not in containerd.image_refs()

    # With `ca` (K3s: configs."HOST:PORT".tls.ca_file) the pull succeeds, verified.
    _write_tls_mirror(containerd, tls_dockyard, ca=pki / "ca.crt")
    containerd.pull(ref)
    assert ref in containerd.image_refs()
    assert digest in containerd.ctr("images", "ls")
    requests = [e for e in tls_dockyard.requests() if e["path"].startswith(f"/v2/library/{name}/")]
    assert any(e["user_agent"].startswith("containerd/") for e in requests)
    assert all(
        "ns=docker.io" in e["path"] for e in requests if e["user_agent"].startswith("containerd/")
    )

    # The kubelet's path: containerd's CRI plugin reads the same certs.d.
    image_id = cri.pull_image(containerd.socket, f"docker.io/library/{name}:v1")
    config_digest = _layout_json(src, digest)["config"]["digest"]
    assert image_id == config_digest


def test_containerd_pulls_from_dockyard_as_its_own_registry(
    tls_dockyard: TLSDockyard, pki: Path, cert_dir: Path, tmp_path: Path, containerd: Containerd
) -> None:
    """Images named after Dockyard itself: `ca = "FILE"` (a string) on its https host."""
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH)
    digest = _push(src, "v1", f"{tls_dockyard.host}/team/app:v1", cert_dir)
    hosts = containerd.certs_d / tls_dockyard.host / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    # containerd 1.6 needs a [host] table; `server` is a dead port, so only Dockyard serves.
    hosts.write_text(
        f'server = "{dead_endpoint()}"\n\n'
        f'[host."https://{tls_dockyard.host}/v2"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{pki / "ca.crt"}"\n'
    )
    ref = f"{tls_dockyard.host}/team/app:v1"
    containerd.pull(ref)
    assert digest in containerd.ctr("images", "ls")
    assert ref in containerd.image_refs()


# --- certificate reload -----------------------------------------------------------------------


def test_renewed_certificate_is_served_without_a_restart(
    tls_dockyard: TLSDockyard, pki: Path, cert_dir: Path, tmp_path: Path
) -> None:
    assert tls_dockyard.proc is not None
    pid = tls_dockyard.proc.pid
    serving = tls_dockyard.root.parent / "dockyard-serving"
    ca = pki / "ca.crt"
    first = _serial(pki / "registry.crt")
    assert _peer_certificate(tls_dockyard.port, ca).serial_number == first

    # A connection opened before the renewal...
    kept = http.client.HTTPSConnection(
        "127.0.0.1", tls_dockyard.port, context=_client_context(ca), timeout=10
    )
    kept.request("GET", "/v2/")
    response = kept.getresponse()
    response.read()
    assert response.status == 200

    # Renew with the same CA (as `tls init --ca-cert --ca-key` does) and copy the files
    # over the served ones in place, the certificate first, as `cp` would.
    renewed = tmp_path / "renewed"
    _tls_init(renewed, "--ca-cert", str(pki / "ca.crt"), "--ca-key", str(pki / "ca.key"))
    second = _serial(renewed / "registry.crt")
    assert second != first
    shutil.copyfile(renewed / "registry.crt", serving / "registry.crt")
    shutil.copyfile(renewed / "registry.key", serving / "registry.key")

    deadline = time.monotonic() + 30
    while _peer_certificate(tls_dockyard.port, ca).serial_number != second:
        assert time.monotonic() < deadline, tls_dockyard.log()
        time.sleep(0.2)
    assert tls_dockyard.proc.poll() is None and tls_dockyard.proc.pid == pid
    reloads = [e for e in tls_dockyard.log_entries() if e["msg"] == "tls certificate reloaded"]
    assert [e["serial"] for e in reloads] == [format(second, "x")]
    assert not [e for e in tls_dockyard.log_entries() if e["level"] == "error"]

    # ...carries on with the certificate it was opened with.
    kept.request("GET", "/v2/")
    assert kept.getresponse().status == 200
    assert kept.sock is not None
    old_der = kept.sock.getpeercert(binary_form=True)
    assert old_der is not None
    assert x509.load_der_x509_certificate(old_der).serial_number == first
    kept.close()
    # Real clients over new connections: fine with the renewed certificate.
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH)
    assert _push(src, "v1", f"localhost:{tls_dockyard.port}/tls/renewed:v1", cert_dir) == (
        _layout_digest(src, "v1")
    )

    # A broken file is refused: logged, and the renewed certificate stays in service.
    (serving / "registry.crt").write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    deadline = time.monotonic() + 30
    while not [e for e in tls_dockyard.log_entries() if e["level"] == "error"]:
        assert time.monotonic() < deadline, tls_dockyard.log()
        time.sleep(0.2)
    errors = [e for e in tls_dockyard.log_entries() if e["level"] == "error"]
    assert (
        errors[0]["msg"] == "tls certificate reload failed: still serving the previous certificate"
    )
    assert "holds no valid PEM certificate" in errors[0]["error"]
    assert _peer_certificate(tls_dockyard.port, ca).serial_number == second
    assert _get(tls_dockyard.port, ca) == 200

    # Fixed (atomically this time, as a Secret update or certbot does): loaded.
    third_dir = tmp_path / "third"
    _tls_init(third_dir, "--ca-cert", str(pki / "ca.crt"), "--ca-key", str(pki / "ca.key"))
    for name in ("registry.key", "registry.crt"):
        shutil.copyfile(third_dir / name, serving / f".{name}.new")
        os.replace(serving / f".{name}.new", serving / name)
    third = _serial(third_dir / "registry.crt")
    deadline = time.monotonic() + 30
    while _peer_certificate(tls_dockyard.port, ca).serial_number != third:
        assert time.monotonic() < deadline, tls_dockyard.log()
        time.sleep(0.2)
    assert tls_dockyard.proc.poll() is None and tls_dockyard.proc.pid == pid


# --- mutual TLS -------------------------------------------------------------------------------


def test_client_certificates_with_clientcas(
    tls_dockyard_factory: ServerFactory,
    pki: Path,
    cert_dir: Path,
    tmp_path: Path,
    containerd: Containerd,
) -> None:
    client_ca, client_ca_key = _client_ca(tmp_path / "clients-pki")
    server = tls_dockyard_factory(clientcas=[client_ca])
    ca = pki / "ca.crt"
    good = _issue_client_certificate(tmp_path / "clients", client_ca, client_ca_key, "ci-bot")
    # Signed by the server's CA, which is not a client CA: not good enough.
    stranger = _issue_client_certificate(
        tmp_path / "clients", pki / "ca.crt", pki / "ca.key", "stranger"
    )

    assert _get(server.port, ca, client=good) == 200
    _wait_for_request(server, "GET", "/v2/")
    for client in (None, stranger):
        before = len(server.requests())
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(server.port, ca, client=client)
        assert len(server.requests()) == before

    # skopeo: client.cert + client.key next to ca.crt in the cert directory.
    src = tmp_path / "src"
    build_image(src, "v1", HOST_ARCH)
    error = _fails(
        "skopeo",
        "copy",
        "--dest-tls-verify=true",
        f"--dest-cert-dir={cert_dir}",
        f"oci:{src}:v1",
        f"docker://{server.host}/library/mtls:v1",
    )
    assert _refused_handshake(error), error
    assert not [e for e in server.requests() if "/library/mtls/" in e["path"]]
    mtls_dir = tmp_path / "mtls-certs"
    mtls_dir.mkdir()
    shutil.copy(ca, mtls_dir / "ca.crt")
    shutil.copy(good[0], mtls_dir / "client.cert")
    shutil.copy(good[1], mtls_dir / "client.key")
    digest = _push(src, "v1", f"{server.host}/library/mtls:v1", mtls_dir)
    assert digest == _layout_digest(src, "v1")

    # containerd: K3s writes configs."HOST:PORT".tls.cert_file/key_file as `client`.
    ref = "docker.io/library/mtls:v1"
    _write_tls_mirror(containerd, server, ca=ca)
    before = len(server.requests())
    error = _ctr_pull_fails(containerd, ref)
    assert _refused_handshake(error), error
    assert len(server.requests()) == before
    _write_tls_mirror(containerd, server, ca=ca, client=good)
    containerd.pull(ref)
    assert digest in containerd.ctr("images", "ls")
