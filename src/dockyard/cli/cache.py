"""`dockyard cache warm` and `dockyard cache ls`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click

from dockyard.cli.common import config_options, human_bytes, image_references, load_or_exit
from dockyard.metadata import queries as q
from dockyard.oci import mediatypes as mt
from dockyard.oci.reference import ImageReference
from dockyard.proxy.upstream import MANIFEST_ACCEPT, upstreams_from_config


@click.group()
def cache() -> None:
    """Inspect and fill the pull-through cache."""


# -- ls -------------------------------------------------------------------------------------


@cache.command("ls")
@config_options
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def cache_ls(config_path: Path | None, root: Path | None, output: str) -> None:
    """What is cached, per upstream: repositories, tags, sizes and last pull."""
    config = load_or_exit(config_path, root)
    upstreams, _default = upstreams_from_config(config.proxy)
    db_path = config.root / "metadata.db"
    if not db_path.exists():
        raise click.ClickException(f"no Dockyard store at {config.root}")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        report: list[dict[str, Any]] = []
        for upstream in upstreams:
            prefix = f"{upstream.name}/"
            repos = [r for r in q.repository_usage(conn, prefix) if r.manifests]
            report.append(
                {
                    "upstream": upstream.name,
                    "url": upstream.url,
                    "bytes": q.distinct_blob_bytes(conn, prefix),
                    "repositories": [
                        {
                            "name": r.name[len(prefix) :],
                            "tags": r.tags,
                            "manifests": r.manifests,
                            "bytes": r.blob_bytes + r.manifest_bytes,
                            "last_pull": r.last_pull,
                        }
                        for r in repos
                    ],
                }
            )
    finally:
        conn.close()
    if output == "json":
        click.echo(json.dumps({"upstreams": report}, indent=2))
        return
    if not report:
        click.echo("no upstreams configured (proxy.upstreams or proxy.remoteurl)")
        return
    for entry in report:
        click.echo(f"{entry['upstream']}  {entry['url']}  {human_bytes(entry['bytes'])} cached")
        for repo in entry["repositories"]:
            pulled = (
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(repo["last_pull"]))
                if repo["last_pull"]
                else "never"
            )
            click.echo(
                f"  {repo['name']:<50} {repo['tags']:>4} tags {repo['manifests']:>4} manifests "
                f"{human_bytes(repo['bytes']):>10}  last pull {pulled}"
            )


# -- warm -----------------------------------------------------------------------------------


@dataclass
class _Blob:
    repository: ImageReference
    digest: str
    size: int


def _platform_matches(descriptor: dict[str, Any], platforms: tuple[str, ...]) -> bool:
    if not platforms:
        return True
    platform = descriptor.get("platform") or {}
    parts = [platform.get("os", ""), platform.get("architecture", "")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    have = "/".join(parts)
    return any(have == p or have.startswith(p + "/") for p in platforms)


class _Warmer:
    def __init__(self, session: aiohttp.ClientSession, base: str, platforms: tuple[str, ...]):
        self.session = session
        self.base = base.rstrip("/")
        self.platforms = platforms

    async def _get(self, ref: ImageReference, path: str, **headers: str) -> aiohttp.ClientResponse:
        url = f"{self.base}/v2/{ref.repository}/{path}"
        response = await self.session.get(url, params={"ns": ref.registry}, headers=headers)
        if response.status != 200:
            body = await response.text()
            response.release()
            raise click.ClickException(f"{ref}: {path} answered {response.status}: {body[:300]}")
        return response

    async def manifests(self, ref: ImageReference, reference: str) -> list[_Blob]:
        """Fetch a manifest (and the children of an index); return the blobs to pull."""
        response = await self._get(ref, f"manifests/{reference}", Accept=MANIFEST_ACCEPT)
        media_type = mt.strip_parameters(response.headers.get("Content-Type", ""))
        document = json.loads(await response.read())
        if media_type in mt.INDEXES or "manifests" in document:
            blobs: list[_Blob] = []
            for child in document.get("manifests", []):
                if _platform_matches(child, self.platforms):
                    blobs += await self.manifests(ref, child["digest"])
            return blobs
        found = [document["config"], *document.get("layers", [])]
        return [_Blob(ref, d["digest"], int(d["size"])) for d in found if not d.get("urls")]

    async def blob(self, blob: _Blob, progress: Any) -> None:
        response = await self._get(blob.repository, f"blobs/{blob.digest}")
        try:
            async for chunk in response.content.iter_chunked(1 << 20):
                progress.update(len(chunk))
        finally:
            response.release()


async def _warm(base: str, refs: list[ImageReference], platforms: tuple[str, ...]) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        warmer = _Warmer(session, base, platforms)
        blobs: dict[str, _Blob] = {}
        for ref in refs:
            for blob in await warmer.manifests(ref, ref.reference):
                blobs.setdefault(blob.digest, blob)
        total = sum(b.size for b in blobs.values())
        with click.progressbar(
            length=total, label=f"warming {len(refs)} image(s)", show_pos=True
        ) as progress:
            semaphore = asyncio.Semaphore(4)

            async def one(blob: _Blob) -> None:
                async with semaphore:
                    await warmer.blob(blob, progress)

            await asyncio.gather(*(one(b) for b in blobs.values()))
        return total


@cache.command("warm")
@click.argument("refs", nargs=-1)
@click.option(
    "--file",
    "list_file",
    type=click.File("r"),
    help="Read more references from a file, one per line (# starts a comment).",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Only these platforms of multi-platform images, e.g. linux/amd64 (repeatable).",
)
@click.option(
    "--registry",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The running Dockyard to warm.",
)
def cache_warm(
    refs: tuple[str, ...], list_file: Any, platforms: tuple[str, ...], registry: str
) -> None:
    """Pull images from their upstreams into the cache ahead of time.

    REFS are image references as nodes name them (nginx:1.27, ghcr.io/org/app:v1,
    registry.k8s.io/pause@sha256:...). Each is fetched through the running Dockyard with
    the `ns` of its registry, exactly as containerd would, so the cache stores it.
    """
    parsed = image_references(refs, list_file)
    try:
        total = asyncio.run(_warm(registry, parsed, platforms))
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach {registry}: {exc}") from None
    click.echo(f"cached {len(parsed)} image(s), {human_bytes(total)} of blobs")
