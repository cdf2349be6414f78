"""The benchmark itself still runs: tiny sizes, one round, every section (no timing checks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("limits", "push", "pull", "requests", "fanout", "pullthrough", "rss", "gc", "targets")


@pytest.mark.timeout(120)
def test_quick_benchmark_writes_every_section_and_a_chart(tmp_path: Path) -> None:
    assert shutil.which("wrk"), "wrk is missing: scripts/test.sh installs it"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
            "--tmp",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    result = json.loads((tmp_path / "bench-quick.json").read_text())
    for section in SECTIONS:
        assert result.get(section), f"section {section!r} missing or empty"
    for section, metric in (
        ("push", "monolithic_mb_s"),
        ("push", "chunked_mb_s"),
        ("pull", "warm_mb_s"),
        ("requests", "manifest_get_c1_req_s"),
        ("requests", "blob_head_c1_p99_ms"),
        ("fanout", "aggregate_mb_s"),
        ("pullthrough", "upstream_x_image"),
    ):
        entry = result[section][metric]
        for server in ("dockyard", "distribution"):
            assert entry[server]["median"] is not None, (section, metric, server)
        assert entry["ratio"] is not None
    for phase in ("push_monolithic", "pull_warm", "requests", "fanout", "pullthrough"):
        assert result["rss"][phase]["dockyard"]["median"] > 0
        assert result["rss"][phase]["distribution"]["median"] > 0
    for key in ("loopback_tcp_mb_s", "sha256_mb_s", "disk_write_fsync_mb_s"):
        assert result["limits"][key]["median"] > 0
    from bench.limits import SENDFILE_SAMPLES

    # The sendfile yardsticks swing from run to run: several samples in each round.
    sendfile = result["limits"]["loopback_sendfile_mb_s"]
    assert len(sendfile["samples"]) == SENDFILE_SAMPLES and sendfile["median"] > 0
    if len(os.sched_getaffinity(0)) >= 2:  # pulls and a yardstick with the ends pinned apart
        apart = result["limits"]["loopback_sendfile_apart_mb_s"]
        assert len(apart["samples"]) == SENDFILE_SAMPLES and apart["median"] > 0
        for metric in ("cold_apart_mb_s", "warm_apart_mb_s", "warm_apart_cpu_s_per_gib"):
            for server in ("dockyard", "distribution"):
                assert result["pull"][metric][server]["median"] is not None, (metric, server)
    for mode in ("push_monolithic", "push_chunked"):
        for server in ("dockyard", "distribution"):
            (state,) = result["memory_before"][mode][server]
            assert state["memfree_mib"] > 0 and state["cached_mib"] >= 0, state
    assert result["gc"]["gc"]["manifests"] > 0
    assert result["gc"]["latency_during_gc"]["requests"] > 0
    assert {t["target"] for t in result["targets"]}
    meta = result["meta"]
    assert meta["machine"]["nproc"] >= 1 and meta["machine"]["kernel"]

    png = tmp_path / "bench-quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Dockyard" in out.stdout and "targets" in out.stdout


def test_apart_pins_client_and_every_server_thread_then_restores_them() -> None:
    from bench.servers import apart

    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        with pytest.raises(RuntimeError, match="two CPUs"), apart(os.getpid()):
            pass
        return
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start()"
    server = subprocess.Popen([sys.executable, "-c", code + "; time.sleep(30)"])
    try:
        tasks = Path(f"/proc/{server.pid}/task")
        deadline = time.monotonic() + 10
        while len(list(tasks.iterdir())) < 2:  # both threads started
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first = min(allowed)
        with apart(server.pid):
            assert os.sched_getaffinity(0) == {first}
            for task in tasks.iterdir():
                assert os.sched_getaffinity(int(task.name)) == allowed - {first}
        assert os.sched_getaffinity(0) == allowed
        for task in tasks.iterdir():
            assert os.sched_getaffinity(int(task.name)) == allowed
    finally:
        server.kill()
        server.wait()


@pytest.mark.timeout(120)
def test_profiler_samples_the_server_and_names_its_hot_functions(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.profile", "push", "--runs", "2", "--size", "64",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    svg = (tmp_path / "profile-push.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # The upload path shows up among the hot functions of a push.
    assert "dockyard/registry/uploads.py" in out.stdout, out.stdout


def test_stream_comparison_runs_every_method_and_reports_rates(tmp_path: Path) -> None:
    from bench.stream import METHODS, compare

    size = 3 * (1 << 20) + 12345  # not a whole number of windows or buffers
    summary = compare(size, 2, list(METHODS), None, tmp_path)
    assert set(summary) == set(METHODS)
    for method, s in summary.items():
        assert 0 < s["min_mb_s"] <= s["median_mb_s"] <= s["max_mb_s"], method
        assert s["sender_cpu_s_per_gib"] >= 0, method
    out = subprocess.run(
        [sys.executable, "-m", "bench.stream", "--size", "1MiB", "--runs", "1",
         "--methods", "sendfile,warm-sendfile", "--tmp", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "warm-sendfile" in out.stdout and "s/GiB" in out.stdout
    assert list(tmp_path.iterdir()) == []  # the test file is gone


class _BodyServer:
    """A threaded HTTP server answering every GET with the same body (or cutting one off)."""

    def __init__(self, body: bytes, cut_after: int | None = None) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is None:
                    self.wfile.write(body)
                else:
                    self.wfile.write(body[: outer.cut_after])
                    self.close_connection = True

        self.cut_after = cut_after
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_parallel_load_processes_return_every_flow_in_order() -> None:
    import hashlib

    from bench.httpc import Get, HTTPError, run_flows_parallel

    body = bytes(range(256)) * 4096  # 1 MiB
    server = _BodyServer(body)
    try:
        flows = [[Get(f"/flow/{i}")] * (1 + i % 2) for i in range(7)]
        results = run_flows_parallel("127.0.0.1", server.port, flows, 30, 3, hash_first=True)
        assert len(results) == 7
        for i, result in enumerate(results):
            assert result.error is None
            assert result.statuses == [200] * (1 + i % 2), i  # flow i came back as result i
            assert result.received == len(body) * (1 + i % 2)
            assert result.started <= result.finished
        assert results[0].digest == "sha256:" + hashlib.sha256(body).hexdigest()
        assert all(r.started > 0 for r in results)
        server.cut_after = 1000  # a server that hangs up mid-body fails the flow, not the run
        results = run_flows_parallel("127.0.0.1", server.port, flows[:4], 30, 2)
        assert all(r.error and "closed" in r.error for r in results)
    finally:
        server.close()
    with pytest.raises(HTTPError, match="load process failed"):
        run_flows_parallel("127.0.0.1", server.port, flows[:4], 30, 2)  # nothing listens
