"""Garbage-collection benchmark: gc time for a store of many blobs and manifests, and the
latency of manifest GETs while `dockyard gc` runs beside the serving registry vs idle.

    .venv/bin/python -m bench.gc [--blobs 10000] [--manifests 1000] [--json FILE]

The store is filled through Dockyard's HTTP API (monolithic `POST ?digest=` uploads of small
blobs over 16 keep-alive connections, then the manifests). Half the manifests are tagged;
the other half, and the blobs only they use, are garbage (`--delete-untagged`, grace 0s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.httpc import Connection, Get, HTTPError, run_flows
from bench.servers import DOCKYARD, Monitor, Server

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOS = 10

_SUMMARY = re.compile(
    r"(?:deleted|would delete) (\d+) tag\(s\), (\d+) manifest\(s\), (\d+) blob\(s\)"
    r".* in ([\d.]+)s"
)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def fill_store(server: Server, blobs: int, manifests: int, connections: int = 16) -> list[str]:
    """Push `manifests` images of `blobs // manifests` small blobs each; tag every other one.

    Returns the paths of the tagged manifests (what the latency probe pulls).
    """
    per_image = max(2, blobs // manifests)
    uploads: list[Get] = []
    puts: list[Get] = []
    tagged: list[str] = []
    for m in range(manifests):
        repo = f"bench/gc-{m % REPOS}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": m}).encode()
        layers = [os.urandom(256) for _ in range(per_image - 1)]
        for data in (config, *layers):
            uploads.append(
                Get(
                    f"/v2/{repo}/blobs/uploads/?digest={_digest(data)}",
                    {"Content-Type": "application/octet-stream"},
                    "POST",
                    data,
                )
            )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                    for layer in layers
                ],
            }
        ).encode()
        reference = f"t{m}" if m % 2 == 0 else _digest(manifest)
        if m % 2 == 0:
            tagged.append(f"/v2/{repo}/manifests/{reference}")
        puts.append(
            Get(
                f"/v2/{repo}/manifests/{reference}", {"Content-Type": OCI_MANIFEST}, "PUT", manifest
            )
        )
    for requests in (uploads, puts):
        flows = [requests[i::connections] for i in range(connections)]
        results = run_flows(server.host, server.port, flows, timeout=600)
        failed = [r for r in results if r.error or any(s != 201 for s in r.statuses)]
        if failed:
            sample = failed[0]
            raise RuntimeError(f"filling the gc store failed: {sample.error} {sample.statuses[:5]}")
    return tagged


class LatencyProbe:
    """Sequential manifest GETs on one keep-alive connection until stopped."""

    def __init__(self, server: Server, paths: list[str], limit: float = 600.0) -> None:
        self.server = server
        self.paths = paths
        self.limit = limit
        self.latencies: list[float] = []
        self.errors = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Accept": OCI_MANIFEST}
        started = time.perf_counter()
        deadline = started + self.limit
        i = 0
        conn = Connection(self.server.host, self.server.port, timeout=30)
        try:
            while not self._stop.is_set() and time.perf_counter() < deadline:
                path = self.paths[i % len(self.paths)]
                i += 1
                try:
                    response = conn.request("GET", path, headers)
                except (OSError, HTTPError):
                    self.errors += 1
                    conn.close()
                    conn = Connection(self.server.host, self.server.port, timeout=30)
                    continue
                if response.status != 200:
                    self.errors += 1
                self.latencies.append(response.seconds)
        finally:
            conn.close()
            self.seconds = time.perf_counter() - started

    def start(self) -> LatencyProbe:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(60)
        lat = self.latencies
        return {
            "requests": len(lat),
            "req_s": len(lat) / self.seconds if self.seconds else 0.0,
            "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": max(lat, default=float("nan")) * 1000,
            "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
            "errors": self.errors,
        }


def _gc(server: Server, dry_run: bool, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    args = [sys.executable, "-m", "dockyard", "gc", "--root", str(server.root)]
    args += ["--grace", "0s", "--delete-untagged"] + (["--dry-run"] if dry_run else [])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return proc, time.perf_counter()


def _summary(log: Path) -> dict[str, float]:
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        match = _SUMMARY.search(line)
        if match:
            tags, manifests, blobs, seconds = match.groups()
            return {
                "tags": int(tags),
                "manifests": int(manifests),
                "blobs": int(blobs),
                "collector_s": float(seconds),
            }
    raise RuntimeError(f"no gc summary in {log}: {' | '.join(lines[-5:])}")


def run_gc_bench(
    workdir: Path,
    blobs: int,
    manifests: int,
    idle_seconds: float,
    dockyard_args: list[str] | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Fill a fresh Dockyard, time a dry run and a real gc, probe latency idle and during gc."""
    server = Server(DOCKYARD, workdir / "gc-dockyard", extra_args=dockyard_args or [])
    server.start()
    try:
        started = time.perf_counter()
        tagged = fill_store(server, blobs, manifests)
        fill_s = time.perf_counter() - started
        # One GET of every tagged manifest first: a first pull records its time in the
        # database, which the idle probe should not be charged for.
        with Connection(server.host, server.port, timeout=30) as conn:
            for path in tagged:
                conn.request("GET", path, {"Accept": OCI_MANIFEST})

        proc, t0 = _gc(server, True, workdir / "gc-dry-run.log")
        proc.wait(timeout)
        dry = _summary(workdir / "gc-dry-run.log") | {"wall_s": time.perf_counter() - t0}

        idle = LatencyProbe(server, tagged).start()
        time.sleep(idle_seconds)
        idle_stats = idle.stop()

        probe = LatencyProbe(server, tagged).start()
        with Monitor(server.pid) as monitor:
            proc, t0 = _gc(server, False, workdir / "gc.log")
            status = proc.wait(timeout)
            wall = time.perf_counter() - t0
        during = probe.stop()
        if status != 0:
            raise RuntimeError(
                f"dockyard gc exited with {status}: {(workdir / 'gc.log').read_text()}"
            )
        real = _summary(workdir / "gc.log") | {"wall_s": wall}
        assert monitor.usage is not None
        return {
            "store": {
                "blobs": blobs,
                "manifests": manifests,
                "tagged_manifests": len(tagged),
                "fill_s": fill_s,
                "fill_requests_per_s": (blobs + manifests) / fill_s,
            },
            "dry_run": dry,
            "gc": real,
            "latency_idle": idle_stats,
            "latency_during_gc": during,
            "server_cpu_s_during_gc": monitor.usage.cpu_seconds,
            "server_peak_rss_mib_during_gc": monitor.usage.peak_rss_mib,
        }
    finally:
        server.stop()


def format_gc(result: dict[str, Any]) -> str:
    store, gc, dry = result["store"], result["gc"], result["dry_run"]
    idle, busy = result["latency_idle"], result["latency_during_gc"]
    return "\n".join(
        [
            f"gc: store of {store['blobs']} blobs / {store['manifests']} manifests "
            f"(filled in {store['fill_s']:.1f}s over HTTP, "
            f"{store['fill_requests_per_s']:.0f} uploads/s on 16 connections)",
            f"  dry run        {dry['collector_s']:.2f}s (process {dry['wall_s']:.2f}s)",
            f"  gc             {gc['collector_s']:.2f}s (process {gc['wall_s']:.2f}s): deleted "
            f"{gc['manifests']} manifests, {gc['blobs']} blobs",
            f"  manifest GET   idle p50 {idle['p50_ms']:.2f} ms  p99 {idle['p99_ms']:.2f} ms  "
            f"({idle['req_s']:.0f} req/s, {idle['requests']} requests)",
            f"  during gc      p50 {busy['p50_ms']:.2f} ms  p99 {busy['p99_ms']:.2f} ms  "
            f"({busy['req_s']:.0f} req/s, {busy['requests']} requests, {busy['errors']} errors)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc", description=__doc__)
    parser.add_argument("--blobs", type=int, default=10_000)
    parser.add_argument("--manifests", type=int, default=1_000)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-gc-") as tmp:
        result = run_gc_bench(Path(tmp), args.blobs, args.manifests, args.idle_seconds)
    print(format_gc(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
