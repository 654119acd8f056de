"""Every command documents itself with an example; a new command without one fails here."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from fleet.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


ALL = _commands(cli)


def test_the_reference_commands_exist() -> None:
    for expected in [
        ("token", "create"),
        ("token", "show"),
        ("token", "list"),
        ("token", "update"),
        ("token", "delete"),
        ("token", "credential", "generate"),
        ("token", "credential", "delete"),
        ("scope-map", "create"),
        ("scope-map", "update"),
        ("scope-map", "show"),
        ("scope-map", "list"),
        ("scope-map", "delete"),
        ("init",),
        ("admin", "create-key"),
        ("serve",),
    ]:
        assert expected in ALL


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    example = result.output.split("Example:", 1)[1]
    assert "fleet " + " ".join(path) in example.replace("\\\n", " ").replace("  ", " ")
