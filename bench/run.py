"""Dockyard vs CNCF Distribution 2.8, side by side on loopback, and the machine's limits.

    .venv/bin/python -m bench [--rounds 3] [--quick] [--only push,pull,...] [--out DIR]

Both registries run at once from the same config (filesystem storage in a temporary
directory, deletes enabled, access log on); every round measures each of them in turn, the
order flipping from round to round, so a noisy neighbour hits both alike. See README.md,
"Benchmarks", for what each section measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import limits as machine_limits
from bench.gc import format_gc, run_gc_bench
from bench.httpc import (
    Connection,
    FileBody,
    Get,
    Hasher,
    client_processes,
    expect,
    location_path,
    run_flows_parallel,
    with_query,
)
from bench.load import ACCEPT, run_wrk, write_script, wrk_version
from bench.report import (
    compare,
    format_table,
    format_targets,
    markdown_table,
    summarise,
    targets,
    write_chart,
)
from bench.servers import (
    DISTRIBUTION,
    DOCKYARD,
    LOG_INFO,
    LOG_QUIET,
    Monitor,
    Server,
    apart,
    distribution_version,
)

MIB = 1 << 20
GIB = 1 << 30
SUFFIX = 16  # every pushed blob is the source file plus 16 fresh random bytes
SECTIONS = ("limits", "push", "pull", "requests", "fanout", "pullthrough", "gc")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
_ACCESS_LOG = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) (\d+)')


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use forms like 1GiB, 16MiB")
    number, unit = match.groups()
    unit = (unit or "B").upper().rstrip("B") or "B"
    scale = {"B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "KI": 1 << 10, "MI": MIB, "GI": GIB}
    return int(float(number) * scale[unit])


def human(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


# -- blob sources --------------------------------------------------------------------------


@dataclass
class Source:
    """A random file; blob i is the file plus a fresh 16-byte suffix (so every push is new)."""

    path: Path
    file_size: int
    base: Hasher

    @property
    def size(self) -> int:
        return self.file_size + SUFFIX

    def digest(self, suffix: bytes) -> str:
        h = self.base.copy()
        h.update(suffix)
        return "sha256:" + h.hexdigest()

    @classmethod
    def create(cls, path: Path, size: int) -> Source:
        file_size = max(0, size - SUFFIX)
        h = hashlib.sha256()
        block = 16 * MIB
        with path.open("wb") as f:
            left = file_size
            while left > 0:
                data = os.urandom(min(block, left))
                f.write(data)
                h.update(data)
                left -= len(data)
        return cls(path, file_size, h)


def source_dir(base: Path, need: int) -> Path:
    """Blob sources live in tmpfs when it has room: dropping the page cache spares them."""
    shm = Path("/dev/shm")
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > need * 1.5 + GIB:
            return Path(tempfile.mkdtemp(prefix="dockyard-bench-src-", dir=shm))
    except OSError:
        pass
    path = base / "sources"
    path.mkdir()
    return path


# -- registry operations ----------------------------------------------------------------


def push_bytes(conn: Connection, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = expect(conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "start upload")
    path = with_query(location_path(r.headers["location"]), "digest", digest)
    expect(
        conn.request("PUT", path, {"Content-Type": "application/octet-stream"}, data),
        201,
        "upload",
    )
    return digest


def push_empty_blob(conn: Connection, repo: str) -> None:
    """The zero-length blob: one `POST ?digest=` (Dockyard answers a POST-then-PUT of an
    empty blob with a 500), then a PUT if the registry opened a session instead
    (Distribution 2.8 ignores the digest on a POST)."""
    path = f"/v2/{repo}/blobs/uploads/?digest={EMPTY_DIGEST}"
    headers = {"Content-Type": "application/octet-stream"}
    r = conn.request("POST", path, headers, b"")
    if r.status == 202:
        path = with_query(location_path(r.headers["location"]), "digest", EMPTY_DIGEST)
        r = conn.request("PUT", path, headers, b"")
    expect(r, 201, "empty blob upload")


def push_image(conn: Connection, repo: str, tag: str, layers: list[tuple[str, int]]) -> bytes:
    """Push a config and an OCI manifest over already pushed layers; returns the manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    config_digest = push_bytes(conn, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
        }
    ).encode()
    expect(
        conn.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, manifest
        ),
        201,
        "manifest PUT",
    )
    return manifest


def push_source(server: Server, repo: str, source: Source, chunk: int | None) -> tuple[float, str]:
    """Push one new blob from `source`: POST then PUT with the body, or PATCH chunks then
    PUT. Returns (seconds, digest)."""
    suffix = os.urandom(SUFFIX)
    digest = source.digest(suffix)
    size = source.size
    octet = {"Content-Type": "application/octet-stream"}
    with source.path.open("rb") as f, Connection(server.host, server.port, timeout=600) as conn:
        started = time.perf_counter()
        r = expect(conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "start upload")
        location = location_path(r.headers["location"])
        if chunk is None:
            body = FileBody(f, source.file_size, suffix, 0, size)
            r = conn.request("PUT", with_query(location, "digest", digest), octet, body)
        else:
            offset = 0
            while offset < size:
                n = min(chunk, size - offset)
                headers = octet | {"Content-Range": f"{offset}-{offset + n - 1}"}
                body = FileBody(f, source.file_size, suffix, offset, n)
                r = expect(conn.request("PATCH", location, headers, body), 202, "PATCH chunk")
                location = location_path(r.headers["location"])
                offset += n
            r = conn.request("PUT", with_query(location, "digest", digest))
        expect(r, 201, "finish upload")
        seconds = time.perf_counter() - started
    return seconds, digest


def pull_blob(server: Server, repo: str, digest: str, size: int) -> float:
    with Connection(server.host, server.port, timeout=600) as conn:
        r = conn.request("GET", f"/v2/{repo}/blobs/{digest}", keep_body=False)
    expect(r, 200, "blob GET")
    if r.received != size:
        raise RuntimeError(f"pulled {r.received} of {size} bytes from {server.label}")
    return r.seconds


def drop_caches() -> str | None:
    """Write back and drop the page cache; the reason if that is not permitted."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
        return None
    except OSError as exc:
        return f"cannot drop the page cache ({exc}); cold pulls are not measured"


def upstream_bytes(log: Path, offset: int) -> tuple[int, int]:
    """Body bytes and requests the upstream's access log shows after `offset`."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    total = requests = 0
    for match in _ACCESS_LOG.finditer(text):
        total += int(match.group(4))
        requests += 1
    return total, requests


def wait_quiet(path: Path, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Until a log file has not grown for `quiet` seconds (background fetches finishing)."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


class ForeignLoad:
    """How much CPU other processes took while the benchmark ran (a noise indicator).

    Busy time of the whole machine (user+nice+system in /proc/stat) minus this process's own
    and its reaped children's (the servers, wrk, gc): approximate, but a busy neighbour shows.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy0, self.steal0 = self._machine()
        self.own0 = self._own()
        self.loadavg = self._loadavg()

    @staticmethod
    def _machine() -> tuple[float, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in fields]
        clk = os.sysconf("SC_CLK_TCK")
        return (ticks[0] + ticks[1] + ticks[2]) / clk, (ticks[7] if len(ticks) > 7 else 0) / clk

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    @staticmethod
    def _loadavg() -> float:
        return float(Path("/proc/loadavg").read_text().split()[0])

    def finish(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        busy, steal = self._machine()
        foreign = max(0.0, (busy - self.busy0) - (self._own() - self.own0))
        capacity = elapsed * len(os.sched_getaffinity(0))
        return {
            "loadavg_1m_at_start": self.loadavg,
            "loadavg_1m_at_end": self._loadavg(),
            "other_processes_cpu_s": foreign,
            "other_processes_share": foreign / capacity if capacity else 0.0,
            "steal_s": steal - self.steal0,
        }


# -- the benchmark -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.sections = set(args.only)
        self.log_config = LOG_QUIET if args.quiet_logs else LOG_INFO
        self.servers = {
            DOCKYARD: Server(
                DOCKYARD, workdir / "dockyard", extra_args=args.dockyard_arg, log=self.log_config
            ),
            DISTRIBUTION: Server(DISTRIBUTION, workdir / "distribution", log=self.log_config),
        }
        self.upstream: Server | None = None
        self.samples: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        self.rss: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.rss_source: set[str] = set()
        self.limits: dict[str, list[float]] = defaultdict(list)
        self.memory: dict[str, dict[str, list[dict[str, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.notes: list[str] = []
        self.pushed: dict[str, str] = {}
        self.proxy_image: tuple[bytes, str, int, str] | None = None
        self.fanout_digest: dict[str, str] = {}
        self.gc: dict[str, Any] | None = None
        self.src_dir: Path | None = None

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            self.log(f"note: {message}")

    @contextmanager
    def phase(self, server: Server, name: str, key: str | None = None) -> Iterator[Monitor]:
        """Measure a server's CPU and peak RSS over a phase; the RSS goes to rss[name]."""
        with Monitor(server.pid) as monitor:
            yield monitor
        assert monitor.usage is not None
        self.rss[name][key or server.kind].append(monitor.usage.peak_rss_mib)
        self.rss_source.add(monitor.usage.peak_source)

    def record(self, section: str, metric: str, server: str, value: float) -> None:
        self.samples[section][metric][server].append(value)

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        need = a.blob_size + a.fanout_size + a.proxy_size
        self.src_dir = source_dir(self.workdir, need)
        self.log(f"creating blob sources in {self.src_dir}")
        if self.sections & {"push", "pull"}:
            self.big = Source.create(self.src_dir / "blob.bin", a.blob_size)
        if "fanout" in self.sections:
            self.fan = Source.create(self.src_dir / "fanout.bin", a.fanout_size)
        if "pullthrough" in self.sections:
            self.layer = Source.create(self.src_dir / "layer.bin", a.proxy_size)
        if self.sections & {"push", "pull", "requests", "fanout"}:
            for server in self.servers.values():
                server.start()
                self.log(f"{server.label} on {server.url} (pid {server.pid}), root {server.root}")
                with Connection(server.host, server.port) as conn:
                    layer = os.urandom(1024)
                    layer_digest = push_bytes(conn, "bench/small", layer)
                    push_empty_blob(conn, "bench/small")
                    push_image(conn, "bench/small", "v1", [(layer_digest, len(layer))])
                if "fanout" in self.sections:
                    _, digest = push_source(server, "bench/fanout", self.fan, None)
                    self.fanout_digest[server.kind] = digest
        if "pullthrough" in self.sections:
            self.upstream = Server(DISTRIBUTION, self.workdir / "upstream", label="upstream")
            self.upstream.start()
            self.log(f"upstream Distribution on {self.upstream.url}")
            _, layer_digest = push_source(self.upstream, "library/bench", self.layer, None)
            with Connection(self.upstream.host, self.upstream.port) as conn:
                manifest = push_image(
                    conn, "library/bench", "v1", [(layer_digest, self.layer.size)]
                )
            config_digest = json.loads(manifest)["config"]["digest"]
            self.proxy_image = (manifest, config_digest, self.layer.size, layer_digest)

    def teardown(self) -> None:
        for server in [*self.servers.values(), self.upstream]:
            if server is not None:
                server.stop()
        if self.src_dir is not None:
            shutil.rmtree(self.src_dir, ignore_errors=True)

    # -- phases ----------------------------------------------------------------------------

    def run_limits(self) -> None:
        size = self.args.limits_size
        measured = machine_limits.measure(self.workdir, size)
        for key, values in measured.items():
            self.limits[key].extend(values)
        self.log(
            "limits: "
            + ", ".join(f"{k} {'/'.join(f'{v:.0f}' for v in vs)}" for k, vs in measured.items())
            + " MB/s"
        )

    def run_push(self, server: Server) -> None:
        for mode, chunk in (("monolithic", None), ("chunked", self.args.chunk_size)):
            os.sync()
            # Distribution does not fsync: its push rate follows the page cache's state.
            self.memory[f"push_{mode}"][server.kind].append(memory_state())
            with self.phase(server, f"push_{mode}") as monitor:
                seconds, digest = push_source(server, "bench/big", self.big, chunk)
            assert monitor.usage is not None
            self.record("push", f"{mode}_mb_s", server.kind, self.big.size / seconds / 1e6)
            cpu = monitor.usage.cpu_seconds / (self.big.size / GIB)
            self.record("push", f"{mode}_cpu_s_per_gib", server.kind, cpu)
            self.pushed[server.kind] = digest
            self.log(f"{server.label}: push {mode} {self.big.size / seconds / 1e6:.0f} MB/s")

    def run_pull(self, server: Server) -> None:
        digest = self.pushed.get(server.kind)
        if digest is None:  # pull without push: push one first (not measured)
            _, digest = push_source(server, "bench/big", self.big, None)
            self.pushed[server.kind] = digest
        size = self.big.size
        # One stream over loopback swings widely with where the scheduler puts the two
        # ends (on two CPUs it often puts the client on the server's): several pulls per
        # round, every one a sample, and the same pulls again with client and server
        # pinned to separate CPUs, as on separate machines.
        placements = [""] + (["_apart"] if len(os.sched_getaffinity(0)) >= 2 else [])
        # The first cold read after the pushes runs at a fraction of the disk's speed
        # while it still settles (0.5-0.6 GB/s, against 2.5-3.9, for whichever server
        # pulled first in the round; with the fixed order of the first round, always
        # Dockyard). One unmeasured cold pull per server and round takes that hit.
        if drop_caches() is None:
            seconds = pull_blob(server, "bench/big", digest, size)
            rate = size / seconds / 1e6
            self.log(f"{server.label}: settling cold pull, not measured, {rate:.0f} MB/s")
        for _ in range(self.args.pull_repeats):
            for placement in placements:
                for cache in ("cold", "warm"):
                    if cache == "cold":
                        problem = drop_caches()
                        if problem is not None:
                            self.note(problem)
                            continue
                    else:
                        os.sync()
                    pinned = apart(server.pid) if placement else nullcontext()
                    with pinned, self.phase(server, f"pull_{cache}") as monitor:
                        seconds = pull_blob(server, "bench/big", digest, size)
                    assert monitor.usage is not None
                    rate = size / seconds / 1e6
                    self.record("pull", f"{cache}{placement}_mb_s", server.kind, rate)
                    cpu = monitor.usage.cpu_seconds / (size / GIB)
                    self.record("pull", f"{cache}{placement}_cpu_s_per_gib", server.kind, cpu)
                    where = ", client and server apart" if placement else ""
                    self.log(
                        f"{server.label}: pull {cache}{where} {rate:.0f} MB/s, {cpu:.2f} CPU-s/GiB"
                    )

    def run_requests(self, server: Server) -> None:
        targets = {
            "manifest_get": (
                f"{server.url}/v2/bench/small/manifests/v1",
                write_script(self.workdir, "GET"),
            ),
            # wrk 4.1 waits for a body after HEAD when Content-Length > 0, so HEAD the
            # empty blob: the same lookup path as any other blob in both registries.
            "blob_head": (
                f"{server.url}/v2/bench/small/blobs/{EMPTY_DIGEST}",
                write_script(self.workdir, "HEAD"),
            ),
        }
        with self.phase(server, "requests"):
            for what, (url, script) in targets.items():
                for conns in self.args.connections:
                    stats = run_wrk(url, script, conns, self.args.duration)
                    if stats["errors"]:
                        self.note(
                            f"{server.label}: {what} c={conns}: {stats['errors']:.0f} errors "
                            f"of {stats['requests']:.0f} requests"
                        )
                    for stat in ("req_s", "p50_ms", "p99_ms"):
                        self.record("requests", f"{what}_c{conns}_{stat}", server.kind, stats[stat])
                    self.log(
                        f"{server.label}: {what} c={conns} {stats['req_s']:.0f} req/s "
                        f"p50 {stats['p50_ms']:.2f} ms p99 {stats['p99_ms']:.2f} ms"
                    )

    def run_fanout(self, server: Server) -> None:
        digest = self.fanout_digest[server.kind]
        path = f"/v2/bench/fanout/blobs/{digest}"
        flows = [[Get(path)] for _ in range(self.args.fanout_clients)]
        with self.phase(server, "fanout") as monitor:
            results = run_flows_parallel(
                server.host, server.port, flows, 600, self.args.client_procs, hash_first=True
            )
        assert monitor.usage is not None
        self._check_flows(server.label, results, self.fan.size, digest)
        wall = max(r.finished for r in results) - min(r.started for r in results)
        total = sum(r.received for r in results)
        self.record("fanout", "aggregate_mb_s", server.kind, total / wall / 1e6)
        self.record("fanout", "wall_s", server.kind, wall)
        self.record("fanout", "cpu_s", server.kind, monitor.usage.cpu_seconds)
        self.log(f"{server.label}: fan-out {total / wall / 1e6:.0f} MB/s in {wall:.2f}s")

    def _check_flows(
        self, label: str, results: list[Any], size: int, digest: str | None = None
    ) -> None:
        for r in results:
            if r.error or any(s != 200 for s in r.statuses) or r.received != size:
                raise RuntimeError(
                    f"{label}: a client failed: {r.error} statuses {r.statuses} "
                    f"received {r.received} of {size} bytes"
                )
        if digest is not None and results[0].digest != digest:
            raise RuntimeError(
                f"{label}: pulled bytes have digest {results[0].digest}, not {digest}"
            )

    def run_pullthrough(self, kind: str, round_no: int) -> None:
        assert self.upstream is not None and self.proxy_image is not None
        manifest, config_digest, layer_size, layer_digest = self.proxy_image
        upstream = f"http://127.0.0.1:{self.upstream.port}"
        if kind == DOCKYARD:
            extra = f"proxy: {{upstreams: [{{name: docker.io, url: '{upstream}'}}]}}\n"
            args = list(self.args.dockyard_arg)
        else:
            extra = f"proxy: {{remoteurl: '{upstream}'}}\n"
            args = []
        proxy = Server(
            kind,
            self.workdir / f"proxy-{kind}-{round_no}",
            extra,
            f"{kind} proxy",
            args,
            self.log_config,
        )
        proxy.start()
        try:
            offset = self.upstream.log_size()
            ns = "?ns=docker.io"
            steps = [
                Get(f"/v2/library/bench/manifests/v1{ns}", {"Accept": ACCEPT}),
                Get(f"/v2/library/bench/blobs/{config_digest}{ns}"),
                Get(f"/v2/library/bench/blobs/{layer_digest}{ns}"),
            ]
            config_size = json.loads(manifest)["config"]["size"]
            image = len(manifest) + config_size + layer_size
            flows = [list(steps) for _ in range(self.args.proxy_clients)]
            with self.phase(proxy, "pullthrough", kind) as monitor:
                results = run_flows_parallel(
                    proxy.host, proxy.port, flows, 600, self.args.client_procs, hash_first=True
                )
                wall = max(r.finished for r in results) - min(r.started for r in results)
                # Count what the proxy fetched in the background too (Distribution stores
                # the blob with a fetch of its own while it serves the clients).
                wait_quiet(self.upstream.log_path)
            assert monitor.usage is not None
            self._check_flows(proxy.label, results, image, layer_digest)
            transferred, requests = upstream_bytes(self.upstream.log_path, offset)
        finally:
            proxy.stop()
            proxy.remove_store()
        self.record("pullthrough", "upstream_mib", kind, transferred / MIB)
        self.record("pullthrough", "upstream_x_image", kind, transferred / image)
        self.record("pullthrough", "upstream_requests", kind, requests)
        self.record("pullthrough", "wall_s", kind, wall)
        self.record("pullthrough", "cpu_s", kind, monitor.usage.cpu_seconds)
        self.log(
            f"{proxy.label}: {len(results)} cold pulls in {wall:.2f}s, upstream sent "
            f"{transferred / MIB:.1f} MiB in {requests} requests "
            f"({transferred / image:.2f}x the image)"
        )

    # -- driver ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        load = ForeignLoad()
        try:
            self.setup()
            for round_no in range(self.args.rounds):
                order = [DOCKYARD, DISTRIBUTION]
                if round_no % 2:
                    order.reverse()
                self.log(f"round {round_no + 1}/{self.args.rounds}: {' then '.join(order)}")
                if "limits" in self.sections:
                    self.run_limits()
                for section, method in (
                    ("push", self.run_push),
                    ("pull", self.run_pull),
                    ("requests", self.run_requests),
                    ("fanout", self.run_fanout),
                ):
                    if section in self.sections:
                        for kind in order:
                            method(self.servers[kind])
                if "pullthrough" in self.sections:
                    for kind in order:
                        self.run_pullthrough(kind, round_no)
        finally:
            self.teardown()
        if "gc" in self.sections:
            self.log(f"gc: {self.args.gc_blobs} blobs, {self.args.gc_manifests} manifests")
            self.gc = run_gc_bench(
                self.workdir,
                self.args.gc_blobs,
                self.args.gc_manifests,
                self.args.gc_idle_seconds,
                self.args.dockyard_arg,
            )
        return self.result(time.perf_counter() - started, load.finish())

    def result(self, seconds: float, load: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {"meta": metadata(self.args, seconds), "notes": self.notes}
        out["meta"]["load"] = load
        if load["other_processes_share"] > 0.05:
            self.note(
                f"other processes used {load['other_processes_cpu_s']:.0f} CPU-s "
                f"({100 * load['other_processes_share']:.0f}% of the machine) during the run: "
                "the numbers are noisier than on a quiet machine"
            )
        if self.limits:
            out["limits"] = {k: summarise(v) for k, v in self.limits.items()}
        for section, metrics in self.samples.items():
            out[section] = {m: compare(by_server) for m, by_server in metrics.items()}
        out["rss"] = {phase: compare(by_server) for phase, by_server in self.rss.items()}
        out["meta"]["rss_source"] = sorted(self.rss_source)
        if self.memory:
            # The machine's memory (MiB) as each push started, per server, round by round.
            out["memory_before"] = {k: dict(v) for k, v in self.memory.items()}
        if self.gc is not None:
            out["gc"] = self.gc
        out["targets"] = targets(out)
        return out


# -- metadata and entry point --------------------------------------------------------------


def memory_state() -> dict[str, int]:
    """/proc/meminfo's free, available, page-cache, dirty and writeback sizes (MiB)."""
    wanted = {"MemFree", "MemAvailable", "Cached", "Dirty", "Writeback"}
    state: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in wanted:
                state[key.lower() + "_mib"] = int(rest.split()[0]) // 1024
    except OSError:
        pass
    return state


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0))
    kernel = platform.release()
    return {
        "nproc": nproc,
        "cpu_model": model,
        "kernel": kernel,
        "memory_mib": mem,
        "summary": f"{nproc} CPU {model}, Linux {kernel}, {mem / 1024:.0f} GiB RAM",
    }


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def metadata(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("dockyard")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "seconds": seconds,
        "versions": {
            "dockyard": f"{version} ({git_revision()})",
            "distribution": distribution_version(),
            "wrk": wrk_version(),
            "python": platform.python_version(),
        },
        "settings": {
            "rounds": args.rounds,
            "blob_size": args.blob_size,
            "chunk_size": args.chunk_size,
            "fanout_size": args.fanout_size,
            "fanout_clients": args.fanout_clients,
            "client_procs": args.client_procs,
            "proxy_size": args.proxy_size,
            "proxy_clients": args.proxy_clients,
            "connections": args.connections,
            "wrk_seconds": args.duration,
            "limits_size": args.limits_size,
            "gc_blobs": args.gc_blobs,
            "gc_manifests": args.gc_manifests,
            "sections": args.only,
            "dockyard_args": args.dockyard_arg,
            "server_log": LOG_QUIET if args.quiet_logs else LOG_INFO,
        },
        "units": "MB/s = 10^6 bytes per second; MiB = 2^20 bytes; CPU-s = utime+stime",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument("--blob-size", type=parse_size, help="push/pull blob (default 1GiB)")
    p.add_argument("--chunk-size", type=parse_size, help="PATCH chunk (default 16MiB)")
    p.add_argument(
        "--pull-repeats", type=int, help="cold+warm pulls per server per round (default 3)"
    )
    p.add_argument("--fanout-size", type=parse_size, help="fan-out blob (default 50MiB)")
    p.add_argument("--fanout-clients", type=int, help="fan-out clients (default 100)")
    p.add_argument("--proxy-size", type=parse_size, help="pull-through layer (default 50MiB)")
    p.add_argument("--proxy-clients", type=int, help="pull-through clients (default 100)")
    p.add_argument(
        "--client-procs",
        type=int,
        help="processes driving the fan-out and pull-through clients, as wrk's threads "
        "(default: one per CPU)",
    )
    p.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        help="wrk connection counts (default 1,16,64)",
    )
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 2)")
    p.add_argument("--limits-size", type=parse_size, help="bytes per machine-limit test")
    p.add_argument("--gc-blobs", type=int, help="blobs in the gc store (default 10000)")
    p.add_argument("--gc-manifests", type=int, help="manifests in the gc store (default 1000)")
    p.add_argument("--gc-idle-seconds", type=float, help="idle latency probe (default 3)")
    p.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(SECTIONS),
        help=f"sections to run (default all: {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--dockyard-arg",
        action="append",
        default=[],
        help="extra argument for `dockyard serve` (repeatable), e.g. --dockyard-arg=--workers=2",
    )
    p.add_argument(
        "--quiet-logs",
        action="store_true",
        help="both servers at log level error without access logs (default: info + access log)",
    )
    p.add_argument(
        "--out", type=Path, help="directory for the JSON and PNG (default bench/results)"
    )
    p.add_argument("--name", help="file name stem (default bench, or bench-quick)")
    p.add_argument("--tmp", type=Path, help="where the servers store data (default: system temp)")
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="print the table and redraw the chart (beside the file) of an earlier run",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument(
        "--netns",
        action="store_true",
        help="re-run inside a private network namespace (unshare --net; needs root)",
    )
    args = p.parse_args(argv)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    quick = args.quick
    defaults: dict[str, Any] = {
        "blob_size": 4 * MIB if quick else GIB,
        "chunk_size": MIB if quick else 16 * MIB,
        "pull_repeats": 1 if quick else 3,
        "fanout_size": 2 * MIB if quick else 50 * MIB,
        "fanout_clients": 10 if quick else 100,
        "proxy_size": 2 * MIB if quick else 50 * MIB,
        "proxy_clients": 10 if quick else 100,
        "client_procs": client_processes(),
        "connections": [1, 4] if quick else [1, 16, 64],
        "duration": 1.0 if quick else 2.0,
        "gc_blobs": 200 if quick else 10_000,
        "gc_manifests": 20 if quick else 1_000,
        "gc_idle_seconds": 1.0 if quick else 3.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.limits_size is None:
        args.limits_size = args.blob_size
    if quick and "--rounds" not in (argv if argv is not None else sys.argv[1:]):
        args.rounds = 1
    args.rounds = max(1, args.rounds)
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results"
    if args.name is None:
        args.name = "bench-quick" if quick else "bench"
    return args


def _in_private_netns() -> bool:
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines] == ["lo"]


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.netns and not _in_private_netns():
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--netns"]
        cmd = [sys.executable, "-m", "bench", *rest]
        shell = 'ip link set lo up && exec "$@"'
        root = str(Path(__file__).resolve().parent.parent)
        return subprocess.call(["unshare", "--net", "--", "sh", "-c", shell, "sh", *cmd], cwd=root)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        report(result, args.render, args.render.with_suffix(".png"))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.tmp))
    print(
        f"Dockyard vs Distribution: {args.rounds} round(s), blob {human(args.blob_size)}, "
        f"work directory {workdir}",
        flush=True,
    )
    try:
        result = Bench(args, workdir).run()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    json_path = args.out / f"{args.name}.json"
    png_path = args.out / f"{args.name}.png"
    result["chart"] = png_path.name  # beside the JSON file; no machine paths in results
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    report(result, json_path, png_path)
    return 0


def report(result: dict[str, Any], json_path: Path, png_path: Path) -> None:
    """Print the table, gc figures, targets and notes; write the chart and bench.md."""
    write_chart(result, png_path)
    json_path.with_suffix(".md").write_text(markdown_table(result) + "\n")
    meta = result["meta"]
    load = meta["load"]
    print()
    print(
        f"{meta['date']} - {meta['machine']['summary']} - {meta['seconds']:.0f}s; other "
        f"processes used {100 * load['other_processes_share']:.0f}% of the CPU, "
        f"steal {load['steal_s']:.1f}s"
    )
    print(format_table(result))
    if "gc" in result:
        print()
        print(format_gc(result["gc"]))
    print()
    print("targets (issue 7):")
    print(format_targets(result["targets"]))
    for note in result["notes"]:
        print(f"note: {note}")
    print()
    print(f"wrote {json_path}, {png_path} and {json_path.with_suffix('.md')}")
