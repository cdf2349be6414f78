"""`dockyard df`, `dockyard du` and `dockyard gc`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from dockyard.cli.common import (
    cached_prefixes,
    config_options,
    human_bytes,
    load_or_exit,
    open_store,
    retention_rules,
)
from dockyard.config import Config, parse_duration, parse_size
from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq
from dockyard.ops.eviction import Budget
from dockyard.ops.gc import GarbageCollector, GCOptions, GCResult
from dockyard.ops.quota import QuotaRule
from dockyard.ops.usage import repository_usage, store_usage

FORMAT = click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


@click.command()
@config_options
@FORMAT
def df(config_path: Path | None, root: Path | None, output: str) -> None:
    """Volume size, used and free; Dockyard's share split into pushed and cached bytes."""
    config = load_or_exit(config_path, root)
    db, _driver = open_store(config)
    try:
        usage = asyncio.run(store_usage(db, config.root, cached_prefixes(config)))
        limits = _limits(config, db, usage.cached_bytes)
    finally:
        db.close()
    if output == "json":
        click.echo(json.dumps({**usage.to_dict(), **limits}, indent=2))
        return
    v = usage.volume
    click.echo(f"volume   {v.path}")
    click.echo(f"  size   {human_bytes(v.size):>12}")
    click.echo(f"  used   {human_bytes(v.used):>12}  ({100 * v.used / max(v.size, 1):.1f}%)")
    click.echo(f"  free   {human_bytes(v.free):>12}")
    click.echo(
        f"dockyard {human_bytes(usage.blob_bytes):>12} in {usage.blobs} blobs, "
        f"{usage.repositories} repositories"
    )
    click.echo(f"  pushed {human_bytes(usage.pushed_bytes):>12}")
    click.echo(f"  cached {human_bytes(usage.cached_bytes):>12}")
    budget = limits["cache_budget"]
    if budget is not None:
        click.echo(
            f"cache budget {human_bytes(budget['limit'])}: {budget['state']} "
            f"(evicts above {human_bytes(budget['high'])} down to {human_bytes(budget['low'])})"
        )
    for quota in limits["quotas"]:
        click.echo(
            f"quota {quota['prefix'] or '(total)'}: {human_bytes(quota['used'])} of "
            f"{human_bytes(quota['limit'])}, {quota['state']}"
        )


def _limits(config: Config, db: Database, cached: int) -> dict[str, Any]:
    """Cache budget and quota state, as `df` shows them."""
    cache = config.proxy.cache
    budget: dict[str, Any] | None = None
    if cache.maxsize is not None:
        limit = Budget(parse_size(cache.maxsize)).limit(config.root) or 0
        high, low = int(limit * cache.highwatermark), int(limit * cache.lowwatermark)
        budget = {
            "limit": limit,
            "high": high,
            "low": low,
            "used": cached,
            "state": "above the high watermark: eviction due" if cached > high else "within",
        }
    rules = [QuotaRule(r.prefix, parse_size(r.limit)) for r in config.storage.quota.repositories]
    if config.storage.quota.total is not None:
        rules.append(QuotaRule("", parse_size(config.storage.quota.total)))
    quotas = []
    for rule in rules:
        used = db.read_sync(oq.pushed_bytes_under, rule.prefix, cached_prefixes(config))
        limit = rule.bytes(config.root)
        quotas.append(
            {
                "prefix": rule.prefix,
                "limit": limit,
                "used": used,
                "state": "full: pushes are refused" if used >= limit else "within",
            }
        )
    return {"cache_budget": budget, "quotas": quotas}


@click.command()
@click.argument("repositories", nargs=-1)
@config_options
@FORMAT
def du(
    repositories: tuple[str, ...], config_path: Path | None, root: Path | None, output: str
) -> None:
    """Per repository: bytes referenced, bytes only it references, manifests, tags, last pull.

    REPOSITORIES limits the report to those names (and the repositories under them).
    Sorted by size, largest first.
    """
    config = load_or_exit(config_path, root)
    db, _driver = open_store(config)
    try:
        rows = asyncio.run(repository_usage(db, list(repositories)))
    finally:
        db.close()
    if output == "json":
        click.echo(json.dumps({"repositories": [asdict(r) for r in rows]}, indent=2))
        return
    click.echo(
        f"{'REPOSITORY':<50} {'SIZE':>10} {'EXCLUSIVE':>10} {'MANIFESTS':>9} {'TAGS':>5}  LAST PULL"
    )
    for r in rows:
        pulled = (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.last_pull)) if r.last_pull else "never"
        )
        size, exclusive = human_bytes(r.referenced_bytes), human_bytes(r.exclusive_bytes)
        click.echo(
            f"{r.name:<50} {size:>10} {exclusive:>10} {r.manifests:>9} {r.tags:>5}  {pulled}"
        )


def run_gc(config: Config, dry_run: bool, delete_untagged: bool, grace: str | None) -> GCResult:
    """Collect the configured store with a progress bar per phase; print what was removed."""
    db, driver = open_store(config)
    options = GCOptions(
        dry_run=dry_run,
        delete_untagged=delete_untagged,
        grace=parse_duration(grace if grace is not None else config.storage.gc.grace),
        upload_max_age=parse_duration(config.storage.maintenance.uploadpurging.age),
        retention=retention_rules(config),
    )
    bars: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = click.progressbar(length=total, label=f"sweeping {phase}")
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    try:
        result = asyncio.run(GarbageCollector(db, driver).run(options, progress))
    finally:
        db.close()
    prefix = "eligible for deletion" if dry_run else "deleted"
    for tag in result.tags:
        click.echo(f"tag {prefix}: {tag}")
    for m in result.manifests:
        click.echo(f"manifest {prefix}: {m.repository}@{m.digest}")
    for b in result.blobs:
        click.echo(f"blob {prefix}: {b.digest} ({b.size} bytes)")
    for key in result.orphan_files:
        click.echo(f"orphaned file {prefix}: {key}")
    click.echo(result.summary())
    return result


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--delete-untagged", "-m", is_flag=True, help="Also delete manifests no tag keeps.")
@click.option("--grace", help="Keep anything younger than this (default storage.gc.grace, 1h).")
@config_options
def gc(
    dry_run: bool,
    delete_untagged: bool,
    grace: str | None,
    config_path: Path | None,
    root: Path | None,
) -> None:
    """Online garbage collection: safe while the registry keeps serving pushes and pulls.

    Marks from tags, the child manifests of kept indexes and the referrers of kept
    manifests; sweeps unreferenced blobs (and, with --delete-untagged, untagged manifests),
    expired upload sessions and orphaned files.
    """
    config = load_or_exit(config_path, root)
    run_gc(config, dry_run, delete_untagged, grace)
