"""`serve --workers N|auto`: the CPU count `auto` stands for, and the option's checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.cli.main import cli
from dockyard.cli.workers import MAX_WORKERS, available_cpus, main, supervisor_command

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def _cgroup_v1(root: Path, quota_us: int, period_us: int) -> Path:
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return root


def test_without_a_cgroup_limit_auto_is_the_affinity(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "none") == AFFINITY
    assert available_cpus(_cgroup_v2(tmp_path / "v2", "max 100000")) == AFFINITY
    assert available_cpus(_cgroup_v1(tmp_path / "v1", -1, 100000)) == AFFINITY


@pytest.mark.parametrize(
    ("quota", "expected"),
    [(50_000, 1), (100_000, 1), (150_000, 2), (100_000 * 1000, AFFINITY)],
)
def test_a_cgroup_cpu_limit_caps_auto_rounded_up(tmp_path: Path, quota: int, expected: int) -> None:
    assert available_cpus(_cgroup_v2(tmp_path / "v2", f"{quota} 100000")) == min(expected, AFFINITY)
    assert available_cpus(_cgroup_v1(tmp_path / "v1", quota, 100000)) == min(expected, AFFINITY)


def test_unreadable_cgroup_files_are_ignored(tmp_path: Path) -> None:
    assert available_cpus(_cgroup_v2(tmp_path / "v2", "garbage")) == AFFINITY
    assert 1 <= available_cpus() <= MAX_WORKERS  # this machine's own cgroup


@pytest.mark.parametrize("value", ["0", "65", "-1", "two", "1.5", ""])
def test_invalid_worker_counts_are_refused(value: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", value])
    assert result.exit_code == 2
    assert "--workers" in result.output and "auto" in result.output


def test_supervisor_command_and_its_usage_errors() -> None:
    argv = supervisor_command(3, ["--addr=127.0.0.1:5000"])
    assert argv[1:] == ["-m", "dockyard.cli.workers", "3", "--addr=127.0.0.1:5000"]
    assert main([]) == 2
    assert main(["0"]) == 2
    assert main(["x"]) == 2
