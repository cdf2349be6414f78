"""`dockyard k3s registries | lint | hosts-toml` through click: exit codes, files, formats."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

from click.testing import CliRunner

from dockyard.cli.main import cli

CLEAN = 'mirrors:\n  "docker.io":\n    endpoint:\n      - "http://127.0.0.1:30500"\n'
BROKEN = 'mirrors:\n  docker.io:\n    endpoints: ["http://127.0.0.1:30500"]\n'


def invoke(*args: str | Path, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


# -- registries ----------------------------------------------------------------------------


def test_registries_to_stdout() -> None:
    code, out, _ = invoke("k3s", "registries", "--endpoint", "http://127.0.0.1:30500")
    assert code == 0
    assert '  "registry.k8s.io":\n    endpoint:\n      - "http://127.0.0.1:30500"\n' in out
    assert "configs:" not in out


def test_registries_to_a_private_file(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "registries.yaml"
    code, out, err = invoke(
        "k3s",
        "registries",
        "--endpoint",
        "https://dockyard.example.com",
        "--mirror",
        "*",
        "--ca-file",
        "/etc/dockyard/ca.crt",
        "--username",
        "mirror",
        "--password",
        "secret",
        "-o",
        target,
    )
    assert code == 0, err
    assert out == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    assert '  "*":\n' in text
    assert '      password: "secret"\n' in text
    assert '      ca_file: "/etc/dockyard/ca.crt"\n' in text


def test_registries_password_from_the_environment() -> None:
    result = CliRunner().invoke(
        cli,
        ["k3s", "registries", "--endpoint", "http://h:1", "--username", "u"],
        env={"DOCKYARD_K3S_PASSWORD": "from-env"},
    )
    assert result.exit_code == 0
    assert 'password: "from-env"' in result.stdout


def test_registries_refuses_an_endpoint_without_scheme() -> None:
    code, _, err = invoke("k3s", "registries", "--endpoint", "127.0.0.1:30500")
    assert code == 2
    assert "give the scheme" in err


def test_registries_needs_an_endpoint() -> None:
    code, _, err = invoke("k3s", "registries")
    assert code == 2
    assert "--endpoint" in err


# -- lint ----------------------------------------------------------------------------------


def test_lint_clean_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(CLEAN)
    code, out, _ = invoke("k3s", "lint", path)
    assert code == 0
    assert out == f"{path}: no problems found\n"


def test_lint_findings_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(BROKEN)
    code, out, _ = invoke("k3s", "lint", path)
    assert code == 1
    assert out.startswith(f'{path}:3:5: error[unknown-key] unknown key "endpoints"')


def test_lint_json(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(BROKEN)
    code, out, _ = invoke("k3s", "lint", path, "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert document["file"] == str(path)
    assert [(f["code"], f["line"], f["column"]) for f in document["findings"]] == [
        ("unknown-key", 3, 5)
    ]
    path.write_text(CLEAN)
    code, out, _ = invoke("k3s", "lint", path, "--format", "json")
    assert code == 0
    assert json.loads(out) == {"file": str(path), "findings": [], "errors": 0, "warnings": 0}


def test_lint_stdin() -> None:
    code, out, _ = invoke("k3s", "lint", "-", stdin=BROKEN)
    assert code == 1
    assert out.startswith("<stdin>:3:5:")


def test_lint_checks_files_on_this_machine(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    text = (
        'mirrors:\n  docker.io:\n    endpoint: ["https://h:1"]\n'
        f'configs:\n  "h:1":\n    tls:\n      ca_file: "{ca}"\n'
    )
    path = tmp_path / "registries.yaml"
    path.write_text(text)
    assert invoke("k3s", "lint", path)[0] == 1
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert invoke("k3s", "lint", path)[0] == 0


def test_lint_unreadable_exits_2(tmp_path: Path) -> None:
    code, out, err = invoke("k3s", "lint", tmp_path / "missing.yaml")
    assert code == 2
    assert out == ""
    assert "cannot read" in err
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"mirrors:\n  \xff\xfe: {}\n")
    code, _, err = invoke("k3s", "lint", binary, "--format", "json")
    assert code == 2
    assert "not UTF-8" in err


# -- hosts-toml ----------------------------------------------------------------------------


def test_hosts_toml_writes_certs_d_and_config(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(
        CLEAN
        + '  "*":\n    endpoint: ["http://127.0.0.1:30500"]\n'
        + 'configs:\n  "127.0.0.1:30500":\n    auth: {username: u, password: p}\n'
    )
    out_dir = tmp_path / "containerd"
    code, out, err = invoke("k3s", "hosts-toml", path, "--out", out_dir)
    assert code == 0, err
    assert sorted(out.split()) == sorted(
        str(out_dir / p)
        for p in (
            "certs.d/127.0.0.1:30500/hosts.toml",
            "certs.d/_default/hosts.toml",
            "certs.d/docker.io/hosts.toml",
            "config-registry.toml",
        )
    )
    docker = tomllib.loads((out_dir / "certs.d/docker.io/hosts.toml").read_text())
    assert docker["server"] == "https://registry-1.docker.io/v2"
    assert list(docker["host"]) == ["http://127.0.0.1:30500/v2"]
    assert tomllib.loads((out_dir / "certs.d/_default/hosts.toml").read_text())["server"] == ""
    config = tomllib.loads((out_dir / "config-registry.toml").read_text())
    registry = config["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    assert registry["config_path"] == "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
    assert registry["configs"]["127.0.0.1:30500"]["auth"] == {"username": "u", "password": "p"}


def test_hosts_toml_replaces_files_k3s_generated_before(tmp_path: Path) -> None:
    out_dir = tmp_path / "containerd"
    stale = out_dir / "certs.d" / "quay.io" / "hosts.toml"
    stale.parent.mkdir(parents=True)
    stale.write_text('# File generated by k3s. DO NOT EDIT.\nserver = "https://quay.io/v2"\n')
    hand_made = out_dir / "certs.d" / "registry.local" / "hosts.toml"
    hand_made.parent.mkdir(parents=True)
    hand_made.write_text('server = "https://registry.local"\n')
    path = tmp_path / "registries.yaml"
    path.write_text(CLEAN)
    assert invoke("k3s", "hosts-toml", path, "--out", out_dir)[0] == 0
    assert not stale.parent.exists()
    assert hand_made.exists()
    assert (out_dir / "certs.d" / "docker.io" / "hosts.toml").exists()


def test_hosts_toml_without_default_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(CLEAN)
    out_dir = tmp_path / "containerd"
    code, _, _ = invoke("k3s", "hosts-toml", path, "--out", out_dir, "--disable-default-endpoint")
    assert code == 0
    hosts = (out_dir / "certs.d" / "docker.io" / "hosts.toml").read_text()
    assert "server" not in hosts
    assert '[host."http://127.0.0.1:30500/v2"]' in hosts


def test_hosts_toml_reports_what_k3s_logs(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text('mirrors:\n  docker.io:\n    endpoint: ["http://a b", "http://h:1"]\n')
    code, _, err = invoke("k3s", "hosts-toml", path, "--out", tmp_path / "out")
    assert code == 0
    assert "Ignoring invalid endpoint URL 0=http://a b for docker.io" in err


def test_hosts_toml_refuses_what_k3s_refuses(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text('mirrors:\n  docker.io:\n    endpoint: "http://h:1"\n')
    code, _, err = invoke("k3s", "hosts-toml", path, "--out", tmp_path / "out")
    assert code == 2
    assert "K3s would refuse" in err and "line 3, column 15" in err
    assert not (tmp_path / "out").exists()
    code, _, err = invoke("k3s", "hosts-toml", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    assert code == 2
