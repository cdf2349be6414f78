"""`dockyard k3s rollout` and `dockyard k3s diff`: registries.yaml onto the nodes, and back."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from dockyard.k3s.rollout import (
    INVENTORY,
    PLAYBOOK,
    RegistriesFileError,
    check_registries_text,
    compare,
    format_comparison,
    render_rollout,
)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise click.ClickException(f"cannot read {what} {path}: {reason}") from None


@click.command()
@click.option(
    "--registries",
    "registries_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The registries.yaml to install (e.g. from `dockyard k3s registries`).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the playbooks, the inventory template and files/registries.yaml.",
)
@click.option("--server", "servers", multiple=True, metavar="HOST", help="A K3s server node.")
@click.option("--agent", "agents", multiple=True, metavar="HOST", help="A K3s agent node.")
@click.option(
    "--agent-batch",
    default="100%",
    show_default=True,
    help="How many agents to change at once (a number or a percentage; servers go one by one).",
)
@click.option("--force", is_flag=True, help=f"Overwrite an existing {INVENTORY} (kept by default).")
def rollout(
    registries_path: Path,
    output: Path,
    servers: tuple[str, ...],
    agents: tuple[str, ...],
    agent_batch: str,
    force: bool,
) -> None:
    """An Ansible playbook and inventory template that install registries.yaml on every K3s
    node and restart k3s or k3s-agent only where the file changed."""
    text = _read(registries_path, "registries file")
    try:
        files = render_rollout(text, servers, agents, agent_batch)
    except RegistriesFileError as exc:
        raise click.ClickException(f"{registries_path}: {exc}") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--agent-batch") from None
    for name, content in files.items():
        target = output / name
        if name == INVENTORY and target.exists() and not force:
            # The operator has filled it in; re-running to ship a new file must not lose that.
            click.echo(f"kept {target} (use --force to overwrite)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        click.echo(f"wrote {target}")
    click.echo(f"next: edit {output / INVENTORY}, then run")
    click.echo(f"  cd {output} && ansible-playbook -i {INVENTORY} {PLAYBOOK} --check --diff")


def _fail(message: str) -> NoReturn:
    click.echo(f"dockyard k3s diff: {message}", err=True)
    raise SystemExit(2)


def _read_or_exit(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        _fail(f"cannot read {path}: not UTF-8 text")


@click.command()
@click.option(
    "--registries",
    "registries_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The intended registries.yaml.",
)
@click.option(
    "--ignore-formatting",
    is_flag=True,
    help="Count copies with the same settings but other comments or layout as the same.",
)
@click.argument(
    "node_copies", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
def diff(registries_path: Path, ignore_formatting: bool, node_copies: tuple[Path, ...]) -> None:
    """Compare node copies of registries.yaml (e.g. fetched by the rollout's fetch.yml) with
    the intended file: the settings that differ, then a unified diff. Exit 0 when all are
    the same, 1 when any differs, 2 when a file cannot be read."""
    intended = _read_or_exit(registries_path)
    try:
        check_registries_text(intended)
    except RegistriesFileError as exc:
        _fail(f"{registries_path}: {exc}")
    copies = [(path, _read_or_exit(path)) for path in node_copies]
    differing = 0
    for path, text in copies:
        comparison = compare(intended, text, str(path), intended_label=str(registries_path))
        same = comparison.identical or (ignore_formatting and comparison.equivalent)
        if same and not comparison.identical:
            click.echo(f"same settings: {path} (differs only in comments or layout)")
        else:
            click.echo(format_comparison(comparison), nl=False)
        differing += 0 if same else 1
    click.echo(f"{differing} of {len(copies)} node copies differ from {registries_path}")
    raise SystemExit(1 if differing else 0)
