"""Summaries (median, min, max, Dockyard/Distribution ratio), the table, the targets, the chart."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from bench.servers import DISTRIBUTION, DOCKYARD

SERVERS = (DOCKYARD, DISTRIBUTION)

# (section, metric, label, unit, higher is better)
ROWS: list[tuple[str, str, str, str, bool]] = [
    ("push", "monolithic_mb_s", "push monolithic", "MB/s", True),
    ("push", "chunked_mb_s", "push 16 MiB chunks", "MB/s", True),
    ("push", "monolithic_cpu_s_per_gib", "push monolithic server CPU", "s/GiB", False),
    ("push", "chunked_cpu_s_per_gib", "push chunked server CPU", "s/GiB", False),
    ("pull", "cold_mb_s", "pull cold cache", "MB/s", True),
    ("pull", "cold_cpu_s_per_gib", "pull cold server CPU", "s/GiB", False),
    ("pull", "warm_mb_s", "pull warm cache", "MB/s", True),
    ("pull", "warm_cpu_s_per_gib", "pull warm server CPU", "s/GiB", False),
    ("pull", "cold_apart_mb_s", "pull cold, separate CPUs", "MB/s", True),
    ("pull", "cold_apart_cpu_s_per_gib", "pull cold, separate CPUs, server CPU", "s/GiB", False),
    ("pull", "warm_apart_mb_s", "pull warm, separate CPUs", "MB/s", True),
    ("pull", "warm_apart_cpu_s_per_gib", "pull warm, separate CPUs, server CPU", "s/GiB", False),
    ("fanout", "aggregate_mb_s", "fan-out aggregate", "MB/s", True),
    ("fanout", "wall_s", "fan-out wall time", "s", False),
    ("fanout", "cpu_s", "fan-out server CPU", "s", False),
    ("pullthrough", "upstream_mib", "pull-through upstream bytes", "MiB", False),
    ("pullthrough", "upstream_x_image", "pull-through upstream / image", "x", False),
    ("pullthrough", "wall_s", "pull-through wall time", "s", False),
]


def summarise(samples: list[float]) -> dict[str, Any]:
    values = [v for v in samples if not math.isnan(v)]
    if not values:
        return {"samples": samples, "median": None, "min": None, "max": None}
    return {
        "samples": samples,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def compare(by_server: dict[str, list[float]]) -> dict[str, Any]:
    """{dockyard: summary, distribution: summary, ratio: dockyard median / distribution's}."""
    out: dict[str, Any] = {s: summarise(by_server.get(s, [])) for s in SERVERS}
    mine, theirs = out[DOCKYARD]["median"], out[DISTRIBUTION]["median"]
    out["ratio"] = mine / theirs if mine is not None and theirs else None
    return out


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(summary: dict[str, Any]) -> str:
    if summary["median"] is None:
        return "-"
    if summary["min"] == summary["max"]:
        return _num(summary["median"])
    return f"{_num(summary['median'])} ({_num(summary['min'])}-{_num(summary['max'])})"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


_REQUEST_KEY = re.compile(r"^(manifest_get|blob_head)_c(\d+)_(req_s|p50_ms|p99_ms)$")


def request_key(key: str) -> tuple[str, int, str]:
    """`manifest_get_c16_p99_ms` -> ("manifest GET", 16, "p99")."""
    match = _REQUEST_KEY.match(key)
    if match is None:
        raise ValueError(f"unknown request metric {key!r}")
    what, conns, stat = match.groups()
    name = "manifest GET" if what == "manifest_get" else "blob HEAD"
    return name, int(conns), {"req_s": "req/s", "p50_ms": "p50", "p99_ms": "p99"}[stat]


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(metric, unit, Dockyard, Distribution, ratio) rows for every measured metric."""
    rows: list[tuple[str, str, str, str, str]] = []
    for section, metric, label, unit, _higher in ROWS:
        entry = result.get(section, {}).get(metric)
        if entry:
            rows.append(
                (
                    label,
                    unit,
                    _cell(entry[DOCKYARD]),
                    _cell(entry[DISTRIBUTION]),
                    _ratio(entry["ratio"]),
                )
            )
    for key, entry in result.get("requests", {}).items():
        name, conns, stat = request_key(key)
        unit = "req/s" if stat == "req/s" else "ms"
        rows.append(
            (
                f"{name} c={conns} {stat}",
                unit,
                _cell(entry[DOCKYARD]),
                _cell(entry[DISTRIBUTION]),
                _ratio(entry["ratio"]),
            )
        )
    for phase, entry in result.get("rss", {}).items():
        rows.append(
            (
                f"peak RSS {phase}",
                "MiB",
                _cell(entry[DOCKYARD]),
                _cell(entry[DISTRIBUTION]),
                _ratio(entry["ratio"]),
            )
        )
    return rows


def limit_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    labels = {
        "loopback_tcp_mb_s": "loopback TCP (1 stream, reused 1 MiB buffer)",
        "loopback_sendfile_mb_s": "loopback TCP (1 stream, sendfile of a cached file)",
        "loopback_sendfile_apart_mb_s": "the same, sender and receiver on separate CPUs",
        "sha256_mb_s": "sha256 (hashlib, 1 MiB chunks)",
        "disk_write_fsync_mb_s": "disk write + fsync",
    }
    return [
        (labels.get(key, key), f"{_cell(entry)} MB/s")
        for key, entry in result.get("limits", {}).items()
    ]


def format_table(result: dict[str, Any]) -> str:
    rows = table_rows(result)
    header = ("metric", "unit", "Dockyard", "Distribution", "Dy/Dist")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    limits = limit_rows(result)
    if limits:
        lines.append("")
        lines.append("machine limits (same run): median (min-max)")
        width = max(len(k) for k, _ in limits)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in limits]
    return "\n".join(lines)


def markdown_table(result: dict[str, Any]) -> str:
    rows = table_rows(result)
    lines = [
        "| metric | unit | Dockyard | Distribution | Dockyard / Distribution |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    limits = limit_rows(result)
    if limits:
        lines += ["", "| machine limit (same run) | median (min-max) |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in limits]
    return "\n".join(lines)


# -- the targets -------------------------------------------------------------------


def _median(result: dict[str, Any], section: str, metric: str, server: str) -> float | None:
    entry = result.get(section, {}).get(metric)
    return None if not entry else entry[server]["median"]


def _ratio_of(result: dict[str, Any], section: str, metric: str) -> float | None:
    entry = result.get(section, {}).get(metric)
    return None if not entry else entry["ratio"]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float, at_least: bool, fmt: str) -> None:
        met = None if value is None else (value >= goal if at_least else value <= goal)
        shown = "-" if value is None else fmt.format(value)
        out.append({"target": name, "value": value, "shown": shown, "met": met})

    add(
        "push monolithic >= 2.5x Distribution",
        _ratio_of(result, "push", "monolithic_mb_s"),
        2.5,
        True,
        "{:.2f}x",
    )
    add(
        "push chunked >= 2.5x Distribution",
        _ratio_of(result, "push", "chunked_mb_s"),
        2.5,
        True,
        "{:.2f}x",
    )
    for placement, where in (("", ""), ("_apart", ", separate CPUs")):
        for cache in ("cold", "warm"):
            add(
                f"pull {cache}{where} >= 1.1x Distribution",
                _ratio_of(result, "pull", f"{cache}{placement}_mb_s"),
                1.1,
                True,
                "{:.2f}x",
            )
    for metric, key, name in (
        ("warm_mb_s", "loopback_tcp_mb_s", "loopback TCP (reused buffer)"),
        ("warm_mb_s", "loopback_sendfile_mb_s", "loopback TCP (sendfile)"),
        (
            "warm_apart_mb_s",
            "loopback_sendfile_apart_mb_s",
            "loopback TCP (sendfile, separate CPUs)",
        ),
    ):
        warm = _median(result, "pull", metric, DOCKYARD)
        loop = result.get("limits", {}).get(key, {}).get("median")
        what = "pull warm, separate CPUs" if "apart" in metric else "pull warm"
        add(
            f"{what} >= 0.9 of {name}",
            warm / loop if warm is not None and loop else None,
            0.9,
            True,
            "{:.2f}",
        )
    for cache in ("cold", "warm"):
        add(
            f"pull {cache} <= 0.6 server CPU-s/GiB",
            _median(result, "pull", f"{cache}_cpu_s_per_gib", DOCKYARD),
            0.6,
            False,
            "{:.2f} s",
        )
    add(
        "manifest GET c=16 >= 8x Distribution",
        _ratio_of(result, "requests", "manifest_get_c16_req_s"),
        8.0,
        True,
        "{:.2f}x",
    )
    add(
        "manifest GET c=16 p99 < 10 ms",
        _median(result, "requests", "manifest_get_c16_p99_ms", DOCKYARD),
        10.0,
        False,
        "{:.2f} ms",
    )
    add(
        "fan-out >= 1.4x Distribution",
        _ratio_of(result, "fanout", "aggregate_mb_s"),
        1.4,
        True,
        "{:.2f}x",
    )
    rss = result.get("rss", {}).get("fanout", {}).get(DOCKYARD, {}).get("max")
    add(
        "fan-out Dockyard peak RSS <= 100 MB",
        rss * 1.048576 if rss is not None else None,
        100.0,
        False,
        "{:.0f} MB",
    )
    up = result.get("pullthrough", {}).get("upstream_x_image", {}).get(DOCKYARD, {}).get("max")
    add("pull-through upstream bytes = 1x image", up, 1.0, False, "{:.2f}x")
    return out


def format_targets(items: list[dict[str, Any]]) -> str:
    lines = []
    width = max((len(item["target"]) for item in items), default=0)
    for item in items:
        mark = {True: "met", False: "NOT met", None: "not measured"}[item["met"]]
        lines.append(f"  {item['target']:<{width}} {item['shown']:>10}  {mark}")
    return "\n".join(lines)


# -- the chart -----------------------------------------------------------------------------


def _bars(ax: Any, labels: list[str], entries: list[dict[str, Any]], title: str, unit: str) -> None:
    import numpy as np

    x = np.arange(len(labels))
    width = 0.38
    colors = {DOCKYARD: "#1f77b4", DISTRIBUTION: "#ff7f0e"}
    for i, server in enumerate(SERVERS):
        med = [e[server]["median"] or 0.0 for e in entries]
        low = [(e[server]["median"] or 0.0) - (e[server]["min"] or 0.0) for e in entries]
        high = [(e[server]["max"] or 0.0) - (e[server]["median"] or 0.0) for e in entries]
        ax.bar(
            x + (i - 0.5) * width,
            med,
            width,
            yerr=[low, high],
            capsize=3,
            label=server.capitalize(),
            color=colors[server],
        )
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    flat = list(axes.flat)

    throughput = [
        ("push mono", "push", "monolithic_mb_s"),
        ("push chunked", "push", "chunked_mb_s"),
        ("pull cold", "pull", "cold_mb_s"),
        ("pull warm", "pull", "warm_mb_s"),
        ("pull warm\napart", "pull", "warm_apart_mb_s"),
        ("fan-out", "fanout", "aggregate_mb_s"),
    ]
    present = [(lbl, result[s][m]) for lbl, s, m in throughput if m in result.get(s, {})]
    if present:
        _bars(flat[0], [p[0] for p in present], [p[1] for p in present], "Throughput", "MB/s")
        limits = result.get("limits", {})
        styles = {
            "loopback_tcp_mb_s": ":",
            "loopback_sendfile_mb_s": (0, (1, 3)),
            "loopback_sendfile_apart_mb_s": (0, (3, 1, 1, 1)),
            "sha256_mb_s": "--",
            "disk_write_fsync_mb_s": "-.",
        }
        for key, style in styles.items():
            if key in limits and limits[key]["median"]:
                flat[0].axhline(limits[key]["median"], linestyle=style, color="grey", linewidth=1)
                flat[0].annotate(
                    key.replace("_mb_s", ""),
                    (0, limits[key]["median"]),
                    fontsize=7,
                    color="grey",
                    va="bottom",
                )
        flat[0].legend(fontsize=8)

    requests = result.get("requests", {})
    for ax, suffix, title, unit in (
        (flat[1], "req_s", "Requests per second (wrk)", "req/s"),
        (flat[2], "p99_ms", "p99 latency (wrk)", "ms"),
    ):
        keys = [k for k in requests if k.endswith(suffix)]
        if keys:
            labels = [f"{request_key(k)[0]} c={request_key(k)[1]}" for k in keys]
            _bars(ax, labels, [requests[k] for k in keys], title, unit)
            if suffix == "p99_ms":
                from matplotlib.ticker import ScalarFormatter

                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())

    rss = result.get("rss", {})
    if rss:
        _bars(flat[3], list(rss), list(rss.values()), "Peak RSS per phase", "MiB")

    pull = result.get("pullthrough", {})
    if pull:
        clients = result.get("meta", {}).get("settings", {}).get("proxy_clients", "")
        _bars(
            flat[4],
            ["upstream bytes / image (x)", "wall time (s)"],
            [pull["upstream_x_image"], pull["wall_s"]],
            f"Pull-through: {clients} concurrent cold pulls",
            "",
        )
        flat[4].set_yscale("log")

    gc = result.get("gc")
    if gc:
        ax = flat[5]
        labels = ["idle p50", "idle p99", "during gc p50", "during gc p99"]
        values = [
            gc["latency_idle"]["p50_ms"],
            gc["latency_idle"]["p99_ms"],
            gc["latency_during_gc"]["p50_ms"],
            gc["latency_during_gc"]["p99_ms"],
        ]
        ax.bar(labels, values, color=["#1f77b4", "#1f77b4", "#d62728", "#d62728"])
        ax.set_title(
            f"Dockyard manifest GET, idle vs during gc\n({gc['store']['blobs']} blobs, "
            f"{gc['store']['manifests']} manifests; gc took {gc['gc']['collector_s']:.1f}s)",
            fontsize=10,
        )
        ax.set_ylabel("ms")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="y", alpha=0.3)

    for ax in flat:
        if not ax.has_data():
            ax.set_visible(False)
    meta = result.get("meta", {})
    fig.suptitle(
        f"Dockyard vs Distribution - {meta.get('date', '')} - "
        f"{meta.get('machine', {}).get('summary', '')}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
