"""`dockyard users add|remove|list`: manage the htpasswd file (bcrypt entries)."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.auth import htpasswd
from dockyard.cli.common import load_or_exit


def _file(config_path: Path | None, file: Path | None) -> Path:
    if file is not None:
        return file
    config = load_or_exit(config_path, None)
    if config.auth.htpasswd is None:
        raise click.UsageError("name the htpasswd file with --file, or set auth.htpasswd.path")
    return Path(config.auth.htpasswd.path)


FILE = click.option(
    "--file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The htpasswd file (default: auth.htpasswd.path from --config).",
)
CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REGISTRY_CONFIGURATION_PATH",
    help="Distribution-style config.yml naming the htpasswd file.",
)


@click.group()
def users() -> None:
    """Manage the users of htpasswd authentication."""


@users.command("add")
@click.argument("name")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="DOCKYARD_PASSWORD",
    help="The password (prompted when omitted; also DOCKYARD_PASSWORD).",
)
@FILE
@CONFIG
def add(name: str, password: str, file: Path | None, config_path: Path | None) -> None:
    """Add a user, or change their password. The file is created if needed (mode 0600)."""
    if ":" in name or not name.strip():
        raise click.UsageError("a user name must be non-empty and contain no ':'")
    path = _file(config_path, file)
    entries = htpasswd.parse(path.read_text()) if path.exists() else {}
    existed = name in entries
    entries[name] = htpasswd.hash_password(password)
    htpasswd.write(path, entries)
    click.echo(f"{'updated' if existed else 'added'} {name} in {path}")


@users.command("remove")
@click.argument("name")
@FILE
@CONFIG
def remove(name: str, file: Path | None, config_path: Path | None) -> None:
    """Remove a user."""
    path = _file(config_path, file)
    entries = htpasswd.parse(path.read_text()) if path.exists() else {}
    if name not in entries:
        raise click.ClickException(f"no user {name!r} in {path}")
    del entries[name]
    htpasswd.write(path, entries)
    click.echo(f"removed {name} from {path}")


@users.command("list")
@FILE
@CONFIG
def list_users(file: Path | None, config_path: Path | None) -> None:
    """List the users."""
    path = _file(config_path, file)
    for name in sorted(htpasswd.parse(path.read_text()) if path.exists() else {}):
        click.echo(name)
