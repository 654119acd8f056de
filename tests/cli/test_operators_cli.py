"""``fleet admin ...-operator`` as a person on the server host runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleet.credentials import OPERATOR_PASSWORD_PREFIX

FLEET = [sys.executable, "-m", "fleet"]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One server host for the module (each test uses names of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_DATA_DIR"] = str(tmp_path_factory.mktemp("host") / "data")

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLEET, *args], env=env, input=input, capture_output=True, text=True, timeout=60
        )

    assert run("init").returncode == 0
    return run


def _listed(host) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """``list-operators`` as {name: [role, created, last sign-in]}."""
    lines = host("admin", "list-operators").stdout.splitlines()
    return {fields[0]: fields[1:] for fields in (line.split("\t") for line in lines)}


def test_create_prints_a_generated_password_once_on_its_last_line(host) -> None:  # type: ignore[no-untyped-def]
    made = host("admin", "create-operator", "--name", "alice", "--role", "admin")
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1]
    assert password.startswith(OPERATOR_PASSWORD_PREFIX)
    listed = _listed(host)
    assert listed["alice"][:1] == ["admin"] and listed["alice"][-1] == "never signed in"
    assert password not in str(listed)


def test_password_stdin_sets_the_password_and_prints_none(host) -> None:  # type: ignore[no-untyped-def]
    made = host(
        "admin",
        "create-operator",
        "--name",
        "bob",
        "--role",
        "viewer",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout and "with the password given" in made.stdout


def test_reset_and_delete(host) -> None:  # type: ignore[no-untyped-def]
    host("admin", "create-operator", "--name", "carol", "--role", "viewer")
    reset = host("admin", "reset-password", "--name", "carol")
    assert reset.returncode == 0 and reset.stdout.strip().splitlines()[-1].startswith(
        OPERATOR_PASSWORD_PREFIX
    )
    assert host("admin", "delete-operator", "--name", "carol").returncode == 0
    assert "carol" not in _listed(host)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create-operator", "--name", "x", "--role", "root"], None, "'root' is not one of"),
        (["create-operator", "--name", "-x", "--role", "admin"], None, "InvalidOperatorName"),
        (
            ["create-operator", "--name", "d", "--role", "admin", "--password-stdin"],
            "short\n",
            "InvalidPassword",
        ),
        (
            ["create-operator", "--name", "d", "--role", "admin", "--password-stdin"],
            "\n",
            "read an empty line",
        ),
        (["delete-operator", "--name", "nobody"], None, "OperatorNotFound"),
        (["reset-password", "--name", "nobody"], None, "OperatorNotFound"),
    ],
)
def test_errors_are_clear_and_change_nothing(
    host, args: list[str], stdin: str | None, message: str
) -> None:  # type: ignore[no-untyped-def]
    result = host("admin", *args, input=stdin)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not {"x", "-x", "d", "nobody"} & set(_listed(host))
