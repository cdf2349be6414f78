"""`dockyard export` and `dockyard import`: image bundles for air-gapped sites."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from dockyard.airgap.bundle_import import BundleImporter
from dockyard.airgap.distribution import DistributionStore
from dockyard.airgap.entries import BundleSource
from dockyard.airgap.errors import BundleError
from dockyard.airgap.export import Exporter
from dockyard.airgap.migrate import DistributionMigrator
from dockyard.airgap.remote import RegistryReader
from dockyard.airgap.report import ImportReport
from dockyard.airgap.store import ImportStore
from dockyard.airgap.writer import TarBundleWriter
from dockyard.cli.common import config_options, human_bytes, image_references, load_or_exit
from dockyard.config import Config
from dockyard.errors import RegistryError
from dockyard.metadata import Database
from dockyard.oci.names import validate_name
from dockyard.registry import Registry
from dockyard.storage import FilesystemDriver


class _LazyBar:
    """A progress bar that appears on the first report (when the total is known)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, 1), label=self._label, show_pos=True)
            self._bar.__enter__()
        self._bar.update(min(done, self._bar.length) - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.command("export")
@click.argument("refs", nargs=-1)
@click.option(
    "--file", "list_file", type=click.File("r"), help="More references, one per line (# comments)."
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle to write (replaced only once it is complete).",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Only these platforms, e.g. linux/arm64 (repeatable). Default: all "
    "(docker-archive: this machine's).",
)
@click.option(
    "--format",
    "kind",
    type=click.Choice(["oci-archive", "docker-archive"]),
    default="oci-archive",
    show_default=True,
)
@click.option("--zstd", is_flag=True, help="Compress with zstd (implied by a .zst name).")
@click.option(
    "--registry",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The running Dockyard to read from.",
)
def export(
    refs: tuple[str, ...],
    list_file: Any,
    output: Path,
    platforms: tuple[str, ...],
    kind: str,
    zstd: bool,
    registry: str,
) -> None:
    """Write images into one bundle to carry to an air-gapped site.

    REFS are image references as nodes name them (nginx:1.27, ghcr.io/org/app:v1,
    registry.k8s.io/pause@sha256:...). They are read through the running Dockyard with
    the `ns` of their registry, so cached upstream images are pulled through the cache
    where needed, and every digest is checked while the bundle is written.
    """
    parsed = image_references(refs, list_file)
    reader = RegistryReader(registry)
    exporter = Exporter(reader, platforms, docker_archive=kind == "docker-archive")
    try:
        images = [exporter.resolve(ref) for ref in parsed]
    except BundleError as exc:
        raise click.ClickException(exc.message) from None
    blobs: dict[str, int] = {}
    for image in images:
        blobs.update({str(d): s for d, s in image.blobs.items()})
    compress = zstd or output.name.endswith(".zst")
    writer = TarBundleWriter(output, zstd=compress)
    bar = _LazyBar(f"exporting {len(images)} image(s)")
    total, done = sum(blobs.values()), 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        bar(done, total)

    try:
        progress(0)
        record = exporter.write(images, writer, progress)
        writer.finish()
    except BundleError as exc:
        writer.abort()
        raise click.ClickException(exc.message) from None
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    for image in record["images"]:
        platforms_text = ", ".join(image["platforms"]) or "-"
        click.echo(
            f"{image['name']}  {image['digest']}  {human_bytes(image['size'])}  [{platforms_text}]"
        )
    click.echo(
        f"wrote {output} ({kind}{', zstd' if compress else ''}): "
        f"{len(images)} image(s), {len(record['blobs'])} blob(s), {human_bytes(record['size'])}"
    )


def open_import_store(config: Config) -> Registry:
    """The store of the configured root, created if this is its first use."""
    root = config.root
    if not (root / "metadata.db").exists():
        click.echo(f"creating a new store at {root}", err=True)
    return Registry(
        Database(root / "metadata.db"),
        FilesystemDriver(root),
        manifest_max_size=config.validation.manifests.maxsize,
        delete_enabled=False,
        index_child_required=config.validation.manifests.indexes.must_exist,
    )


def _print_report(report: ImportReport) -> None:
    for plan, status in report.images:
        where = "" if plan.name.startswith(plan.repository) else f"  -> {plan.repository}"
        click.echo(f"{status:<9} {plan.name}  {plan.digest}  {human_bytes(plan.size)}{where}")
    for skipped in report.skipped:
        click.echo(f"skipped   {skipped.what}: {skipped.reason}")
    click.echo(report.summary())


async def _import_all(
    registry: Registry, bundles: tuple[Path, ...], distribution: Path | None, prefix: str | None
) -> int:
    failures = 0
    for path in bundles:
        bar = _LazyBar(f"importing {path.name}")
        try:
            store = ImportStore(registry)
            report = await BundleImporter(store, prefix, bar).run(BundleSource(path))
        except BundleError as exc:
            bar.close()
            click.echo(f"error: {path}: refused, nothing imported: {exc.message}", err=True)
            failures += 1
            continue
        bar.close()
        _print_report(report)
        if report.skipped and not report.images:
            click.echo(f"error: {path}: nothing imported, every image was skipped", err=True)
            failures += 1
    if distribution is not None:
        bar = _LazyBar("copying blobs")
        try:
            source = DistributionStore(distribution)
            store = ImportStore(registry)
            report = await DistributionMigrator(store, source, prefix, bar).run()
        except BundleError as exc:
            bar.close()
            click.echo(f"error: {distribution}: {exc.message}", err=True)
            return failures + 1
        bar.close()
        _print_report(report)
    return failures


@click.command("import")
@click.argument("bundles", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--prefix",
    help="Store images under PREFIX/<repository> instead of <registry>/<repository>.",
)
@click.option(
    "--distribution-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Migrate a Distribution (registry:2) filesystem store: /var/lib/registry or "
    "its docker/registry/v2.",
)
@config_options
def import_(
    bundles: tuple[Path, ...],
    prefix: str | None,
    distribution_root: Path | None,
    config_path: Path | None,
    root: Path | None,
) -> None:
    """Load image bundles (or a Distribution store) into this Dockyard's store.

    BUNDLES are OCI image layouts (directories or .tar, .tar.gz, .tar.zst archives),
    `docker save` / `podman save` archives and K3s air-gap image tarballs. Images keep
    their names: docker.io/library/nginx:1.27 goes to the repository
    docker.io/library/nginx, where nodes mirroring docker.io find it. Every digest is
    verified; a damaged bundle is refused whole. Safe while the server runs, and safe to
    repeat: what is already in the store is skipped.
    """
    if not bundles and distribution_root is None:
        raise click.UsageError("name at least one bundle, or --distribution-root")
    if prefix is not None:
        try:
            validate_name(prefix.strip("/"))
        except RegistryError as exc:
            raise click.UsageError(f"--prefix: {exc.message}") from None
    config = load_or_exit(config_path, root)
    registry = open_import_store(config)
    try:
        failures = asyncio.run(_import_all(registry, bundles, distribution_root, prefix))
    finally:
        registry.close()
    if failures:
        raise SystemExit(1)
