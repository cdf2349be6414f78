"""`dockyard k3s rollout` and `dockyard k3s diff`: golden files, `ansible-playbook
--syntax-check` (offline) and the restart-only-where-changed wiring, node copy comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dockyard.cli.main import cli
from dockyard.k3s.rollout import (
    REGISTRIES_PATH,
    Difference,
    RegistriesFileError,
    compare,
    format_comparison,
    render_fetch_playbook,
    render_inventory,
    render_playbook,
    render_rollout,
    semantic_diff,
    unified_diff,
)

GOLDEN = Path(__file__).parent / "golden" / "rollout"
BIN = Path(sys.executable).parent

REGISTRIES = """\
mirrors:
  "docker.io":
    endpoint:
      - "http://127.0.0.1:30500"
  "quay.io":
    endpoint:
      - "http://127.0.0.1:30500"
configs:
  "127.0.0.1:30500":
    tls:
      insecure_skip_verify: true
"""


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; DOCKYARD_UPDATE_GOLDEN=1 writes it"
    assert text == path.read_text(encoding="utf-8")


# -- golden files ------------------------------------------------------------------------------


def test_playbook_matches_golden() -> None:
    assert_golden("registries.yml", render_playbook())


def test_fetch_playbook_matches_golden() -> None:
    assert_golden("fetch.yml", render_fetch_playbook())


def test_inventory_template_matches_golden() -> None:
    assert_golden("inventory.yml", render_inventory())
    assert_golden("inventory-hosts.yml", render_inventory(("k3s-server-1",), ("edge-a", "edge-b")))


def test_cli_writes_the_project(tmp_path: Path) -> None:
    source = tmp_path / "registries.yaml"
    source.write_text(REGISTRIES)
    out = tmp_path / "rollout"
    result = CliRunner().invoke(
        cli, ["k3s", "rollout", "--registries", str(source), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "registries.yml").read_text() == (GOLDEN / "registries.yml").read_text()
    assert (out / "fetch.yml").read_text() == (GOLDEN / "fetch.yml").read_text()
    assert (out / "inventory.yml").read_text() == (GOLDEN / "inventory.yml").read_text()
    assert (out / "files/registries.yaml").read_bytes() == source.read_bytes()


# -- ansible-playbook --syntax-check -----------------------------------------------------------


def _ansible_env(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    # An empty config of our own, so no ansible.cfg around the machine changes the outcome.
    (home / "ansible.cfg").write_text("[defaults]\n")
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(home / "ansible.cfg"),
        "LC_ALL": "C.UTF-8",
    }


def _ansible(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = BIN / tool
    assert executable.exists(), f"{tool} is missing: pip install -e '.[dev]' (ansible-core)"
    return subprocess.run(
        [str(executable), *args],
        cwd=cwd,
        env=_ansible_env(cwd.parent / "ansible-home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    out = tmp_path / "rollout"
    for name, text in render_rollout(REGISTRIES, ("server-1", "server-2"), ("agent-1",)).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return out


@pytest.mark.parametrize("playbook", ["registries.yml", "fetch.yml"])
def test_playbooks_pass_syntax_check(project: Path, playbook: str) -> None:
    inventory = project.parent / "hosts.ini"
    inventory.write_text(
        "[server]\nserver-1 ansible_connection=local\n\n"
        "[agent]\nagent-1 ansible_connection=local\n\n"
        "[k3s_cluster:children]\nserver\nagent\n"
    )
    result = _ansible(
        "ansible-playbook", "--syntax-check", "-i", str(inventory), playbook, cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"playbook: {playbook}" in result.stdout


def test_syntax_check_would_catch_a_broken_playbook(project: Path) -> None:
    # The check above means something only if ansible-playbook rejects a bad module name.
    broken = (project / "registries.yml").read_text().replace("ansible.builtin.copy", "copyy")
    (project / "broken.yml").write_text(broken)
    result = _ansible(
        "ansible-playbook", "--syntax-check", "-i", "inventory.yml", "broken.yml", cwd=project
    )
    assert result.returncode != 0
    assert "copyy" in result.stderr


def test_inventory_template_groups(project: Path) -> None:
    result = _ansible("ansible-inventory", "-i", "inventory.yml", "--list", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    listing: dict[str, Any] = yaml.safe_load(result.stdout)  # JSON is YAML
    assert sorted(listing["server"]["hosts"]) == ["server-1", "server-2"]
    assert listing["agent"]["hosts"] == ["agent-1"]
    assert sorted(listing["k3s_cluster"]["children"]) == ["agent", "server"]
    result = _ansible(
        "ansible-playbook", "--syntax-check", "-i", "inventory.yml", "registries.yml", cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- what the playbook does --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "service", "serial"), [("server", "k3s", 1), ("agent", "k3s-agent", "25%")]
)
def test_installs_the_file_and_restarts_only_where_it_changed(
    group: str, service: str, serial: int | str
) -> None:
    plays = yaml.safe_load(render_playbook(agent_batch="25%"))
    (play,) = [p for p in plays if p["hosts"] == group]
    assert play["become"] is True
    assert play["serial"] == serial
    (install,) = [t for t in play["tasks"] if "ansible.builtin.copy" in t]
    copy = install["ansible.builtin.copy"]
    assert copy["dest"] == REGISTRIES_PATH == "/etc/rancher/k3s/registries.yaml"
    assert (copy["mode"], copy["owner"], copy["group"]) == ("0600", "root", "root")
    assert copy["src"] == "files/registries.yaml"
    # Restarts happen in a handler, which Ansible runs only on hosts where the copy changed.
    (handler,) = play["handlers"]
    assert install["notify"] == handler["name"]
    assert handler["ansible.builtin.systemd_service"] == {"name": service, "state": "restarted"}
    assert not any("systemd" in key for task in play["tasks"] for key in task)


def test_refuses_a_file_k3s_cannot_read() -> None:
    with pytest.raises(RegistriesFileError, match="line 2, column 1"):
        render_rollout("mirrors: [\n")
    with pytest.raises(RegistriesFileError, match="must be a mapping"):
        render_rollout("- docker.io\n")
    with pytest.raises(ValueError, match="invalid batch"):
        render_rollout(REGISTRIES, agent_batch="0")


def test_cli_keeps_an_edited_inventory(tmp_path: Path) -> None:
    source = tmp_path / "registries.yaml"
    source.write_text(REGISTRIES)
    out = tmp_path / "rollout"
    args = ["k3s", "rollout", "--registries", str(source), "-o", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (out / "inventory.yml").write_text("# mine\n")
    source.write_text(REGISTRIES.replace("30500", "30501"))
    result = CliRunner().invoke(cli, [*args, "--server", "s1"])
    assert result.exit_code == 0, result.output
    assert "kept" in result.stdout
    assert (out / "inventory.yml").read_text() == "# mine\n"
    assert "30501" in (out / "files/registries.yaml").read_text()
    assert CliRunner().invoke(cli, [*args, "--server", "s1", "--force"]).exit_code == 0
    assert "s1:" in (out / "inventory.yml").read_text()


def test_cli_rollout_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mirrors:\n\t- x\n")
    out = str(tmp_path / "out")
    result = CliRunner().invoke(cli, ["k3s", "rollout", "--registries", str(bad), "-o", out])
    assert result.exit_code == 1
    assert "not valid YAML" in result.stderr
    missing = str(tmp_path / "missing.yaml")
    result = CliRunner().invoke(cli, ["k3s", "rollout", "--registries", missing, "-o", out])
    assert result.exit_code == 1
    assert "No such file" in result.stderr
    assert not (tmp_path / "out").exists()


# -- diff ----------------------------------------------------------------------------------------


def test_semantic_diff() -> None:
    intended = yaml.safe_load(REGISTRIES)
    assert semantic_diff(intended, yaml.safe_load(REGISTRIES)) == []
    node = yaml.safe_load(REGISTRIES)
    node["mirrors"]["docker.io"]["endpoint"] = ["https://10.0.0.1:30500", "http://127.0.0.1:30500"]
    del node["configs"]["127.0.0.1:30500"]["tls"]
    node["mirrors"]["ghcr.io"] = {"endpoint": []}
    assert semantic_diff(intended, node) == [
        Difference(
            "changed",
            'mirrors."docker.io".endpoint[0]',
            intended="http://127.0.0.1:30500",
            node="https://10.0.0.1:30500",
        ),
        Difference("extra", 'mirrors."docker.io".endpoint[1]', node="http://127.0.0.1:30500"),
        Difference("extra", 'mirrors."ghcr.io"', node={"endpoint": []}),
        Difference(
            "missing", 'configs."127.0.0.1:30500".tls', intended={"insecure_skip_verify": True}
        ),
    ]
    assert semantic_diff({"a": True}, {"a": "true"}) == [
        Difference("changed", "a", intended=True, node="true")
    ]
    assert semantic_diff(intended, None)[0].path == "(top level)"


def test_compare_identical_equivalent_and_broken() -> None:
    assert compare(REGISTRIES, REGISTRIES, "n").identical
    reformatted = "# managed by hand\n" + REGISTRIES.replace('"docker.io"', "docker.io")
    comparison = compare(REGISTRIES, reformatted, "n")
    assert not comparison.identical
    assert comparison.equivalent
    assert "+# managed by hand" in comparison.text_diff
    broken = compare(REGISTRIES, "mirrors:\n  - [\n", "n")
    assert broken.node_error is not None and "line 3" in broken.node_error
    assert not broken.equivalent


def test_unified_diff_marks_a_missing_final_newline() -> None:
    text = unified_diff("a\nb\n", "a\nb", "x", "y")
    assert text.endswith("+b\n\\ No newline at end of file\n")
    assert text.startswith("--- x\n+++ y\n")


def test_diff_report_matches_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("registries.yaml").write_text(REGISTRIES)
    Path("fetched").mkdir()
    Path("fetched/server-1.yaml").write_text(REGISTRIES)
    Path("fetched/agent-1.yaml").write_text(
        REGISTRIES.replace("127.0.0.1", "10.0.0.5").replace("true", "false")
    )
    Path("fetched/agent-2.yaml").write_text("# old\n" + REGISTRIES)
    Path("fetched/agent-3.yaml").write_text("mirrors:\n\t docker.io: {}\n")
    args = ["k3s", "diff", "--registries", "registries.yaml"]
    args += [f"fetched/{n}.yaml" for n in ("server-1", "agent-1", "agent-2", "agent-3")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert_golden("diff.txt", result.stdout)


def test_diff_exit_codes(tmp_path: Path) -> None:
    intended = tmp_path / "registries.yaml"
    intended.write_text(REGISTRIES)
    same = tmp_path / "same.yaml"
    same.write_text(REGISTRIES)
    layout = tmp_path / "layout.yaml"
    layout.write_text("# comment\n" + REGISTRIES)
    base = ["k3s", "diff", "--registries", str(intended)]
    result = CliRunner().invoke(cli, [*base, str(same)])
    assert (result.exit_code, result.stdout.splitlines()[0]) == (0, f"same: {same}")
    assert CliRunner().invoke(cli, [*base, str(same), str(layout)]).exit_code == 1
    result = CliRunner().invoke(cli, [*base, "--ignore-formatting", str(same), str(layout)])
    assert result.exit_code == 0
    assert f"same settings: {layout}" in result.stdout
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "nowhere.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    assert CliRunner().invoke(cli, [*base, str(tmp_path / "binary.yaml")]).exit_code == 2
    intended.write_text("mirrors: [\n")
    result = CliRunner().invoke(cli, [*base, str(same)])
    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr
    assert CliRunner().invoke(cli, ["k3s", "diff", "--registries", str(same)]).exit_code == 2


def test_format_comparison_for_same_and_changed() -> None:
    assert format_comparison(compare(REGISTRIES, REGISTRIES, "n1")) == "same: n1\n"
    changed = REGISTRIES.replace("quay.io", "gcr.io")
    report = format_comparison(compare(REGISTRIES, changed, "n2", "intended.yaml"))
    assert report.startswith("different: n2 (2 settings)\n")
    assert '  - mirrors."quay.io": missing on the node' in report
    assert '  + mirrors."gcr.io": only on the node' in report
    assert "--- intended.yaml\n+++ n2\n" in report
