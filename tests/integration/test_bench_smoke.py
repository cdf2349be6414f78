"""The benchmark itself still runs: tiny sizes, one round, every section (no timing checks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
    assert result["gc"]["gc"]["manifests"] > 0
    assert result["gc"]["latency_during_gc"]["requests"] > 0
    assert {t["target"] for t in result["targets"]}
    meta = result["meta"]
    assert meta["machine"]["nproc"] >= 1 and meta["machine"]["kernel"]

    png = tmp_path / "bench-quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Dockyard" in out.stdout and "targets" in out.stdout


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
