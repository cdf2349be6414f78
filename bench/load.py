"""Request-rate tests with wrk: req/s and latency percentiles from a small Lua script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MARK = "BENCHJSON "

# wrk calls done() once with the merged statistics of every thread; latencies are in us.
_SCRIPT = """\
wrk.method = "%(method)s"
wrk.headers["Accept"] = "%(accept)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "%(mark)s{\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, "
    .. "\\"p90_us\\": %%d, \\"p99_us\\": %%d, \\"max_us\\": %%d, \\"errors_connect\\": %%d, "
    .. "\\"errors_read\\": %%d, \\"errors_write\\": %%d, \\"errors_status\\": %%d, "
    .. "\\"errors_timeout\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: run scripts/test.sh once, or apt-get install wrk")
    return path


def wrk_version() -> str:
    try:
        out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, RuntimeError, subprocess.TimeoutExpired, IndexError) as exc:
        return f"unknown ({exc})"


def write_script(directory: Path, method: str) -> Path:
    path = directory / f"wrk-{method.lower()}.lua"
    path.write_text(_SCRIPT % {"method": method, "accept": ACCEPT, "mark": MARK})
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    """req/s, p50, p90, p99 and max latency (ms) and the error count of one wrk run."""
    threads = min(2, connections)
    args = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    raw = json.loads(line[len(MARK) :])
    errors = sum(int(v) for k, v in raw.items() if k.startswith("errors_"))
    return {
        "req_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": errors,
    }
