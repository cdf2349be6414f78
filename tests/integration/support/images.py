"""Build small test images offline with umoci (OCI layouts) — digests differ every run."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a command; raise with its output when it fails."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"command failed ({result.returncode}): {' '.join(map(str, args))}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout


def build_image(
    layout: Path, tag: str, arch: str = "amd64", files: dict[str, str] | None = None
) -> None:
    """Add an image `tag` to the OCI layout at `layout` (created if needed)."""
    if not (layout / "index.json").exists():
        run("umoci", "init", "--layout", layout)
    if not _has_tag(layout, "empty"):
        run("umoci", "new", "--image", f"{layout}:empty")
    bundle = layout.parent / f"bundle-{tag}"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:empty", bundle)
    for name, content in (files or {"hello.txt": f"hello from {tag} {arch}\n"}).items():
        path = bundle / "rootfs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
    run(
        "umoci",
        "config",
        "--image",
        f"{layout}:{tag}",
        "--os",
        "linux",
        "--architecture",
        arch,
        "--config.cmd",
        "/hello.txt",
    )
    subprocess.run(["rm", "-rf", str(bundle)], check=True)


def _has_tag(layout: Path, tag: str) -> bool:
    index = json.loads((layout / "index.json").read_text())
    return any(
        (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
        for m in index.get("manifests") or []
    )


def add_index(layout: Path, tag: str, platform_tags: dict[str, str]) -> str:
    """Write a multi-platform OCI index of existing tags (`arch -> tag`); returns its digest."""
    index = json.loads((layout / "index.json").read_text())
    by_tag = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m
        for m in index["manifests"]
        if "annotations" in m
    }
    manifests = []
    for arch, platform_tag in platform_tags.items():
        desc = dict(by_tag[platform_tag])
        desc.pop("annotations", None)
        desc["platform"] = {"architecture": arch, "os": "linux"}
        manifests.append(desc)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    ).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{digest}",
            "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(index))
    return f"sha256:{digest}"
