"""Every atheris harness in fuzz/ starts, fuzzes for a moment and finds no crash.

The long runs are fuzz/run_all.sh's job (README, "Fuzzing"); this keeps the harnesses
working as the code under them changes. All harnesses run at once, each for at most 1000
inputs or 2 seconds, from a fixed libFuzzer seed: the suite gives the same answer on every
run of the same code, and the random exploration happens in run_all.sh, where a crash
comes with the time to look at it. A crash found there becomes a seed in fuzz/seeds/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
HARNESSES = sorted((ROOT / "fuzz").glob("fuzz_*.py"))
SEED = 20261129


def test_there_is_a_harness_per_target() -> None:
    names = {path.stem for path in HARNESSES}
    assert names == {
        "fuzz_config",
        "fuzz_digest",
        "fuzz_htpasswd",
        "fuzz_http",
        "fuzz_manifest",
        "fuzz_names",
        "fuzz_ranges",
        "fuzz_reference",
        "fuzz_registries",
        "fuzz_scopes",
    }
    assert atheris.Fuzz  # the fuzzer itself is installed (the `dev` extra)


def test_every_harness_runs_without_a_crash(tmp_path: Path) -> None:
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for harness in HARNESSES:
        work = tmp_path / harness.stem
        corpus = work / "corpus"
        corpus.mkdir(parents=True)
        seeds = ROOT / "fuzz" / "seeds" / harness.stem
        log = work / "log"
        with log.open("wb") as out:
            running[harness.stem] = (
                subprocess.Popen(
                    [
                        sys.executable,
                        str(harness),
                        "-runs=1000",
                        f"-seed={SEED}",
                        "-max_total_time=2",
                        "-timeout=60",
                        f"-artifact_prefix={work}/",
                        str(corpus),
                        *([str(seeds)] if seeds.is_dir() else []),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    env={**os.environ, "TMPDIR": str(work)},
                ),
                log,
            )
    failures = []
    for name, (process, log) in running.items():
        try:
            code = process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        output = log.read_text(errors="replace")
        if code != 0 or "Done " not in output:
            failures.append(f"{name}: exit {code}\n{output[-3000:]}")
        crashes = [
            p.name for p in log.parent.iterdir() if p.name.startswith(("crash-", "timeout-"))
        ]
        if crashes:
            failures.append(f"{name}: {crashes}")
    assert not failures, "\n\n".join(failures)
