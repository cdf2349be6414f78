"""`dockyard doctor`: run on a node to check its mirror set-up end to end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import click

from dockyard.doctor import diagnose
from dockyard.oci.reference import parse_image_reference

K3S_REGISTRIES = Path("/etc/rancher/k3s/registries.yaml")


@click.command()
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=K3S_REGISTRIES,
    show_default=True,
    help="The node's registries.yaml.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    help="Resolve this reference through each matching mirror, as containerd would "
    "(repeatable), e.g. docker.io/library/nginx:1.27.",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds per check.")
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def doctor(path: Path, images: tuple[str, ...], timeout: float, output: str) -> None:
    """Check this node's registries.yaml and every mirror endpoint in it.

    Lints the file, then per endpoint: DNS, TCP, TLS with the configured CA, the /v2/
    answer and credentials, and resolves --image references with ?ns= like containerd.
    Exit status 0 when everything passes, 1 otherwise.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    try:
        refs = [parse_image_reference(i) for i in images]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    report = asyncio.run(diagnose(text, refs, timeout))
    if output == "json":
        click.echo(json.dumps({"ok": report.ok, "checks": [asdict(c) for c in report.checks]}))
    else:
        for check in report.checks:
            mark = "PASS" if check.ok else ("WARN" if check.warning else "FAIL")
            click.echo(f"{mark}  {check.subject}: {check.name}  {check.detail}".rstrip())
            if not check.ok and check.fix:
                click.echo(f"      fix: {check.fix}")
        click.echo("all checks passed" if report.ok else "some checks failed")
    raise SystemExit(0 if report.ok else 1)
