"""Options and helpers shared by commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dockyard.config import Config, ConfigError, load_config, parse_duration
from dockyard.metadata import Database
from dockyard.oci.reference import ImageReference, parse_image_reference
from dockyard.ops.retention import RetentionRule
from dockyard.proxy.upstream import upstreams_from_config
from dockyard.storage import FilesystemDriver

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """`--config` and `--root`, as `dockyard serve` takes them."""
    func = click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Storage root (overrides storage.filesystem.rootdirectory).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="REGISTRY_CONFIGURATION_PATH",
        help="Distribution-style config.yml (also REGISTRY_CONFIGURATION_PATH).",
    )(func)
    return func


def load_or_exit(config_path: Path | None, root: Path | None) -> Config:
    """The config, or exit status 2 with the reason."""
    overrides = {"storage.filesystem.rootdirectory": str(root)} if root is not None else {}
    try:
        loaded = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        click.echo(f"dockyard: {exc}", err=True)
        raise SystemExit(2) from None
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    return loaded.config


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def open_store(config: Config) -> tuple[Database, FilesystemDriver]:
    """The metadata database and blob driver of a configured root (for offline commands)."""
    root = config.root
    if not (root / "metadata.db").exists():
        raise click.ClickException(f"no Dockyard store at {root} (metadata.db not found)")
    return Database(root / "metadata.db"), FilesystemDriver(root)


def cached_prefixes(config: Config) -> list[str]:
    """Repository-name prefixes under which the cache keeps pulled-through content."""
    upstreams, _default = upstreams_from_config(config.proxy)
    return [f"{u.name}/" for u in upstreams]


def retention_rules(config: Config) -> tuple[RetentionRule, ...]:
    """`storage.retention` as the collector applies it."""
    return tuple(
        RetentionRule(
            r.repositories,
            r.keeptags,
            parse_duration(r.pulledwithin) if r.pulledwithin else None,
        )
        for r in config.storage.retention
    )


def image_references(refs: tuple[str, ...], list_file: Any) -> list[ImageReference]:
    """REFS plus the lines of --file (`#` starts a comment), parsed; UsageError if none."""
    texts = list(refs)
    if list_file is not None:
        for line in list_file:
            line = line.split("#", 1)[0].strip()
            if line:
                texts.append(line)
    if not texts:
        raise click.UsageError("name at least one image reference (or --file)")
    try:
        return [parse_image_reference(t) for t in texts]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
