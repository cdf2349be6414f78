"""`registry`: Distribution's command line, so existing runbooks keep working.

registry serve CONFIG
registry garbage-collect [--dry-run] [--delete-untagged] CONFIG
"""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.cli.common import load_or_exit
from dockyard.cli.serve import serve
from dockyard.cli.storage import run_gc

CONFIG = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def registry() -> None:
    """Distribution's `registry` commands, run by Dockyard."""


@registry.command("serve")
@click.argument("config_path", type=CONFIG)
@click.pass_context
def registry_serve(ctx: click.Context, config_path: Path) -> None:
    """Run the registry with a Distribution config.yml (same as `dockyard serve --config`)."""
    ctx.invoke(serve, config_path=config_path, addr=None, root=None)


@registry.command("garbage-collect")
@click.argument("config_path", type=CONFIG)
@click.option("--dry-run", "-d", is_flag=True, help="Do everything except remove the blobs.")
@click.option(
    "--delete-untagged", "-m", is_flag=True, help="Delete manifests that are not currently tagged."
)
def garbage_collect(config_path: Path, dry_run: bool, delete_untagged: bool) -> None:
    """Delete unreferenced blobs (online: the registry may keep serving)."""
    config = load_or_exit(config_path, None)
    run_gc(config, dry_run, delete_untagged, None)


def main() -> None:
    registry()
