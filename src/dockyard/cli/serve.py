"""`dockyard serve`: run the registry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import uvloop
from aiohttp import web

from dockyard.api import create_app
from dockyard.api.context import ApiSettings
from dockyard.api.metrics import METRICS
from dockyard.api.middleware import access_logger_for, protocol_logger
from dockyard.auth.authenticator import Authenticator, Challenge
from dockyard.auth.htpasswd import HtpasswdFile
from dockyard.auth.rules import DELETE, PULL, PUSH, AccessPolicy, AccessRule
from dockyard.auth.tls import build_server_tls
from dockyard.cli.allocator import keep_freed_memory
from dockyard.cli.common import cached_prefixes, retention_rules
from dockyard.cli.logs import AccessLogSink, configure_logging
from dockyard.cli.workers import MAX_WORKERS, available_cpus, supervisor_command
from dockyard.config import (
    Config,
    ConfigError,
    load_config,
    parse_addr,
    parse_duration,
    parse_size,
)
from dockyard.metadata import Database
from dockyard.ops.eviction import Budget, CacheEvictor
from dockyard.ops.gc import GarbageCollector, GCOptions
from dockyard.ops.maintenance import Maintenance, Schedule
from dockyard.ops.quota import QuotaEnforcer, QuotaRule
from dockyard.proxy.cache import PullThroughCache
from dockyard.proxy.locks import LockDir
from dockyard.proxy.router import Router
from dockyard.proxy.upstream import UpstreamClient, upstreams_from_config
from dockyard.registry import Registry
from dockyard.storage import FilesystemDriver

if TYPE_CHECKING:
    from dockyard.auth.tokens import TokenIssuer, TokenVerifier

log = logging.getLogger("dockyard.serve")


def build_registry(config: Config) -> Registry:
    """The local registry the config describes (filesystem blobs + SQLite metadata)."""
    root = config.root
    driver = FilesystemDriver(root)
    db = Database(root / "metadata.db")
    quota = config.storage.quota
    rules = [QuotaRule(r.prefix, parse_size(r.limit)) for r in quota.repositories]
    if quota.total is not None:
        rules.append(QuotaRule("", parse_size(quota.total)))
    enforcer = QuotaEnforcer(db, root, rules, cached_prefixes(config)) if rules else None
    return Registry(
        db,
        driver,
        manifest_max_size=config.validation.manifests.maxsize,
        delete_enabled=config.storage.delete.enabled,
        quota=enforcer,
        index_child_required=config.validation.manifests.indexes.must_exist,
    )


def build_authenticator(config: Config) -> Authenticator | None:
    """Authentication and access rules, when the config asks for them."""
    auth = config.auth
    if not auth.enabled:
        return None
    policy = AccessPolicy(
        tuple(
            AccessRule(
                r.repositories, {PULL: tuple(r.pull), PUSH: tuple(r.push), DELETE: tuple(r.delete)}
            )
            for r in auth.access
        ),
        {name: tuple(members) for name, members in auth.groups.items()},
    )
    htpasswd = HtpasswdFile(Path(auth.htpasswd.path)) if auth.htpasswd else None
    verifier: TokenVerifier | None = None
    issuer: TokenIssuer | None = None
    # The token classes are imported here, not at the top: jwt and cryptography cost a
    # registry without tokens ~15 MB.
    if auth.token is not None:
        from dockyard.auth.tokens import TokenVerifier

        token = auth.token
        verifier = TokenVerifier.from_bundle(
            token.issuer, token.service, Path(token.rootcertbundle)
        )
        challenge = Challenge("bearer", token.realm, token.service)
    elif auth.tokenserver.enabled and htpasswd is not None:
        from dockyard.auth.tokens import TokenIssuer, TokenVerifier

        server = auth.tokenserver
        issuer = TokenIssuer(
            server.issuer,
            server.service,
            parse_duration(server.expiration),
            Path(server.key) if server.key else None,
        )
        verifier = TokenVerifier({}, {}, [])
        challenge = Challenge("bearer", server.realm, server.service)
    else:
        assert auth.htpasswd is not None
        challenge = Challenge("basic", auth.htpasswd.realm)
    if issuer is not None and verifier is not None:
        verifier.trust(issuer)
    return Authenticator(policy, challenge, htpasswd, verifier, issuer)


def build_maintenance(config: Config, registry: Registry, primary: bool = True) -> Maintenance:
    """The periodic jobs the config asks for (only bookkeeping flushes unless `primary`)."""
    gc = config.storage.gc
    purging = config.storage.maintenance.uploadpurging
    budget = config.proxy.cache
    upstreams, _default = upstreams_from_config(config.proxy)
    max_ages = {f"{u.name}/": u.max_age for u in upstreams}
    evictor = None
    if upstreams and (budget.maxsize is not None or any(max_ages.values())):
        evictor = CacheEvictor(
            registry.db,
            registry.driver,
            config.root,
            cached_prefixes(config),
            Budget(
                parse_size(budget.maxsize) if budget.maxsize else None,
                budget.highwatermark,
                budget.lowwatermark,
            ),
            max_ages,
        )
    schedule = Schedule(
        upload_max_age=parse_duration(purging.age) if purging.enabled else None,
        upload_interval=parse_duration(purging.interval),
        gc_interval=parse_duration(gc.interval) if gc.enabled else None,
        gc_options=GCOptions(
            delete_untagged=gc.deleteuntagged,
            grace=parse_duration(gc.grace),
            upload_max_age=parse_duration(purging.age),
            retention=retention_rules(config),
        ),
        eviction_interval=parse_duration(budget.interval) if evictor else None,
    )
    collector = GarbageCollector(registry.db, registry.driver) if gc.enabled else None
    if not primary:
        return Maintenance(registry, Schedule(upload_max_age=None))
    return Maintenance(registry, schedule, collector, evictor)


def api_settings(config: Config, cached: list[str]) -> ApiSettings:
    headers = tuple(
        (name, value) for name, values in config.http.headers.items() for value in values
    )
    configured = {name.lower() for name, _value in headers}
    if "x-content-type-options" not in configured:
        # Secure by default: browsers must not sniff registry content into something active.
        headers += (("X-Content-Type-Options", "nosniff"),)
    if "server" not in configured:
        # The product, not the versions of the Python and HTTP library it runs on.
        headers += (("Server", "Dockyard"),)
    return ApiSettings(
        extra_headers=headers,
        body_idle_timeout=parse_duration(config.http.readtimeout),
        catalog_max_entries=config.catalog.maxentries,
        root=config.root,
        cached_prefixes=tuple(cached),
    )


def build_cache(config: Config, registry: Registry) -> PullThroughCache | None:
    """The pull-through cache, when the config names upstreams (call inside the loop)."""
    upstreams, default = upstreams_from_config(config.proxy)
    if not upstreams:
        return None
    clients = {u.name: UpstreamClient.create(u) for u in upstreams}
    for upstream in upstreams:
        log.info(
            "caching upstream",
            extra={
                "fields": {
                    "upstream": upstream.name,
                    "url": upstream.url,
                    "default": upstream.name == default,
                }
            },
        )
    # Shared by every process serving this root (`--workers`): one upstream request each.
    return PullThroughCache(registry, Router(clients, default), LockDir(config.root / "locks"))


async def _flush_access_log(access: AccessLogSink, interval: float = 0.1) -> None:
    while True:
        await asyncio.sleep(interval)
        access.flush()


def log_fields(config: Config, worker_index: int | None) -> dict[str, Any]:
    """The fields every log line carries: `log.fields`, and the worker's index."""
    fields: dict[str, Any] = dict(config.log.fields)
    if worker_index is not None:
        fields["worker"] = worker_index
    return fields


async def run_server(config: Config, worker_index: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight requests and close the database.

    With a `worker_index` this is one of several `--workers` sharing the port; the periodic
    jobs run in worker 0 only.
    """
    tls = build_server_tls(config.http.tls)
    registry = build_registry(config)
    cache = build_cache(config, registry)
    if cache is not None and not worker_index:
        await cache.sweep_locks()  # left by a process that died (a crash, a kill -9)
    maintenance = build_maintenance(config, registry, primary=not worker_index)
    app = create_app(
        registry,
        api_settings(config, cached_prefixes(config)),
        cache,
        maintenance,
        build_authenticator(config),
    )
    host, port = parse_addr(config.http.addr)
    access = AccessLogSink(config.log.formatter, log_fields(config, worker_index))
    access_logger = logging.getLogger("dockyard.access")
    logging_access = not config.log.accesslog.disabled and access_logger.isEnabledFor(logging.INFO)
    # The hook counts every request for the metrics, and writes the access log if it is on.
    hook = access_logger_for(access if logging_access else None, app[METRICS].requests)
    runner = web.AppRunner(
        app,
        access_log_class=hook,
        access_log=access_logger,
        shutdown_timeout=parse_duration(config.http.draintimeout),
        handle_signals=False,
        logger=protocol_logger,
        # A larger socket read buffer lets an upload keep arriving while a batch is written.
        read_bufsize=1 << 18,
        # Bodies are stored as sent, as Distribution does: no decompression amplification,
        # and no request left waiting forever on a body aiohttp failed to decode.
        auto_decompress=False,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        host,
        port,
        ssl_context=tls.context if tls else None,
        backlog=1024,
        reuse_port=worker_index is not None or None,
    )
    await site.start()
    log.info(
        "listening",
        extra={
            "fields": {
                "addr": f"{host}:{port}",
                "root": str(config.root),
                "worker": worker_index or 0,
            }
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    maintenance.start()
    if tls is not None:
        tls.start()
    flusher = asyncio.create_task(_flush_access_log(access))
    try:
        await stop.wait()
        log.info("shutting down: draining in-flight requests")
    finally:
        await runner.cleanup()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        access.flush()
        await maintenance.stop()
        if tls is not None:
            await tls.stop()
        if cache is not None:
            await cache.close()
        registry.close()
        log.info("stopped")


def _workers(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """`--workers`: a count from 1 to MAX_WORKERS, or `auto`."""
    text = value.strip().lower()
    if text == "auto":
        return available_cpus()
    if text.isdigit() and 1 <= int(text) <= MAX_WORKERS:
        return int(text)
    raise click.BadParameter(f"{value!r} is not a number from 1 to {MAX_WORKERS} or auto")


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REGISTRY_CONFIGURATION_PATH",
    help="Distribution-style config.yml (also REGISTRY_CONFIGURATION_PATH).",
)
@click.option("--addr", help="Listen address HOST:PORT (default :5000; overrides http.addr).")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Storage root directory (default ./data; overrides storage.filesystem.rootdirectory).",
)
@click.option(
    "--workers",
    metavar="N|auto",
    default="1",
    callback=_workers,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT), 1-64, or `auto`: one per CPU this "
    "process may use (its affinity, capped by a cgroup CPU limit). With the pull-through "
    "cache they still make one upstream request per blob and per tag: lock files under "
    "<root>/locks pick the process that downloads, the others follow it.",
)
@click.option("--worker-index", type=int, default=None, hidden=True)
def serve(
    config_path: Path | None,
    addr: str | None,
    root: Path | None,
    workers: int,
    worker_index: int | None,
) -> None:
    """Run the registry.

    With no options it listens on 0.0.0.0:5000 and stores blobs and its SQLite metadata
    under ./data. Any Distribution config.yml works; REGISTRY_* environment variables
    override its keys (REGISTRY_HTTP_ADDR, REGISTRY_STORAGE_DELETE_ENABLED, ...).
    """
    overrides: dict[str, Any] = {}
    if addr is not None:
        overrides["http.addr"] = addr
    if root is not None:
        overrides["storage.filesystem.rootdirectory"] = str(root)
    try:
        loaded = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        click.echo(f"dockyard: {exc}", err=True)
        raise SystemExit(2) from None
    config = loaded.config
    if workers > 1:
        args = [f"--config={config_path}"] if config_path is not None else []
        args += [f"--addr={config.http.addr}", f"--root={config.root}"]
        # The supervisor only waits and forwards signals: replace this process (same PID)
        # with one that never imports the server (~10 MB instead of ~65 MB resident).
        os.execv(sys.executable, supervisor_command(workers, args))
    listener = configure_logging(
        config.log.level, config.log.formatter, log_fields(config, worker_index)
    )
    for warning in loaded.warnings:
        log.warning(warning)
    indexes = config.validation.manifests.indexes
    if indexes.platforms != "all":
        log.warning(
            "image indexes may be pushed without all of their images "
            f"(validation.manifests.indexes.platforms: {indexes.platforms}); "
            "tools that expect complete indexes can fail on them"
        )
    try:
        if not keep_freed_memory():
            log.info("the C allocator keeps its own settings (not glibc, or MALLOC_* set)")
        uvloop.run(run_server(config, worker_index))
    except ConfigError as exc:  # a TLS file that cannot be used
        click.echo(f"dockyard: {exc}", err=True)
        raise SystemExit(2) from None
    except OSError as exc:
        click.echo(f"dockyard: cannot serve: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        listener.stop()
