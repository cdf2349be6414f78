"""`dockyard tls ...`: an internal CA and a server certificate for Dockyard."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.auth.pki import (
    DEFAULT_CA_DAYS,
    DEFAULT_SERVER_DAYS,
    Hosts,
    Issued,
    PKIError,
    create_ca,
    issue_server_certificate,
    load_ca,
    parse_hosts,
    write_file,
)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "registry.crt"
SERVER_KEY = "registry.key"
NODE_CA_PATH = "/etc/rancher/k3s/dockyard-ca.crt"


@click.group()
def tls() -> None:
    """Create the certificates Dockyard serves HTTPS with."""


@tls.command("init")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    metavar="NAME_OR_IP",
    help="A name or IP address clients use to reach Dockyard (repeat): NodePort IPs, "
    "service DNS names such as dockyard.registry.svc.cluster.local.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("tls"),
    show_default=True,
    help="Directory for ca.crt, ca.key, registry.crt and registry.key.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=DEFAULT_SERVER_DAYS,
    show_default=True,
    help="Validity of the server certificate (never beyond the CA's).",
)
@click.option(
    "--ca-days",
    type=click.IntRange(min=1),
    default=DEFAULT_CA_DAYS,
    show_default=True,
    help="Validity of a new CA.",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Sign with this existing CA certificate instead of creating a CA (with --ca-key).",
)
@click.option(
    "--ca-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The existing CA's unencrypted PEM private key (with --ca-cert).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5000,
    show_default=True,
    help="The port clients use (NodePort: 30500); only for the printed instructions.",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist in --out.")
def init_command(
    hosts: tuple[str, ...],
    out: Path,
    days: int,
    ca_days: int,
    ca_cert: Path | None,
    ca_key: Path | None,
    port: int,
    force: bool,
) -> None:
    """Create an internal CA (unless given) and a server certificate for HOSTs.

    IP addresses become IP subjectAltNames, names DNS subjectAltNames. Keys are written
    with mode 0600. Then it prints how to give the CA to K3s nodes, Kubernetes, podman,
    skopeo and docker.
    """
    if (ca_cert is None) != (ca_key is None):
        raise click.UsageError("give --ca-cert and --ca-key together")
    try:
        names = parse_hosts(hosts)
    except PKIError as exc:
        raise click.BadParameter(str(exc), param_hint="--host") from None
    new_ca = ca_cert is None
    targets = [out / SERVER_CERT, out / SERVER_KEY]
    if new_ca:
        targets = [out / CA_CERT, out / CA_KEY, *targets]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise click.ClickException(
            f"{', '.join(existing)} already exist; use --force to overwrite "
            "(or --out for another directory)"
        )
    try:
        if ca_cert is not None and ca_key is not None:
            ca = load_ca(ca_cert, ca_key)
        else:
            ca = create_ca(days=ca_days)
        server = issue_server_certificate(ca, names, days=days)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    if new_ca:
        write_file(out / CA_KEY, ca.key_pem(), 0o600)
        write_file(out / CA_CERT, ca.certificate_pem(), 0o644)
    write_file(out / SERVER_KEY, server.key_pem(), 0o600)
    write_file(out / SERVER_CERT, server.certificate_pem(), 0o644)
    ca_path = out / CA_CERT if ca_cert is None else ca_cert
    click.echo(_report(out, ca_path, new_ca, ca, server, names, port), nl=False)


def _report(
    out: Path, ca_path: Path, new_ca: bool, ca: Issued, server: Issued, hosts: Hosts, port: int
) -> str:
    crt, key = out / SERVER_CERT, out / SERVER_KEY
    until = server.certificate.not_valid_after_utc.date().isoformat()
    ca_until = ca.certificate.not_valid_after_utc.date().isoformat()
    addresses = [f"{h}:{port}" if ":" not in h else f"[{h}]:{port}" for h in hosts.all()]
    first = addresses[0]
    lines = ["Wrote:"]
    if new_ca:
        lines += [
            f"  {ca_path}  internal CA certificate, valid until {ca_until}: give it to clients",
            f"  {out / CA_KEY}  CA private key (0600): keep it offline, it signs certificates",
        ]
    lines += [
        f"  {crt}  server certificate for {', '.join(hosts.all())}, valid until {until}",
        f"  {key}  server private key (0600)",
    ]
    if server.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc:
        lines.append("  (the server certificate ends with the CA: renew the CA first)")
    lines += [
        "",
        "Serve HTTPS with them (config.yml; renewed files are picked up without a restart):",
        "  http:",
        "    tls:",
        f"      certificate: {crt.resolve()}",
        f"      key: {key.resolve()}",
        "",
        "In Kubernetes, as the Secret `dockyard k8s manifests --tls-secret` mounts:",
        f"  kubectl -n registry create secret tls dockyard-tls --cert={crt} --key={key}",
        "  dockyard k8s manifests --tls-secret dockyard-tls | kubectl apply -f -",
        "",
        "K3s nodes: copy the CA to every node, then point registries.yaml at it",
        f"  install -D -m 0644 {ca_path} {NODE_CA_PATH}     # on each node",
        "  # /etc/rancher/k3s/registries.yaml",
        "  configs:",
        f'    "{first}":',
        "      tls:",
        f"        ca_file: {NODE_CA_PATH}",
        "  # or have it written:",
        f"  dockyard k3s registries --endpoint https://{first} --ca-file {NODE_CA_PATH}",
        "  # then restart k3s (servers) or k3s-agent (agents): K3s reads the file at start",
        "",
        "podman, buildah, skopeo (one directory per HOST:PORT, file named ca.crt):",
    ]
    lines += [
        f"  install -D -m 0644 {ca_path} /etc/containers/certs.d/{a}/ca.crt" for a in addresses
    ]
    lines += [
        "  # or per command: skopeo --cert-dir DIR (--src-cert-dir, --dest-cert-dir),",
        "  # podman pull|push --cert-dir DIR, where DIR holds ca.crt",
        "docker:",
    ]
    lines += [f"  install -D -m 0644 {ca_path} /etc/docker/certs.d/{a}/ca.crt" for a in addresses]
    return "\n".join(lines) + "\n"
