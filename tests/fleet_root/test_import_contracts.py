"""The layering is a set of import-linter contracts in pyproject.toml (issue 14). ``lint-imports``
must keep them all, and the contracts must say what docs/architecture.md promises: these
tests fail when one is loosened, or when a new module escapes the one it belongs to."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest

import device_agent
import fleet

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contract(name: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (found,) = [c for c in config["contracts"] if c["name"] == name]
    return found


def test_lint_imports_keeps_every_contract() -> None:
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_layers_are_entry_points_then_services_then_the_libraries_then_the_domain() -> None:
    layers = contract("Layers: entry points -> services -> registry_auth, mqtt, db -> domain")
    assert layers["type"] == "layers"
    assert layers["layers"] == [
        "fleet.cli",
        "fleet.api | fleet.web | fleet.scheduler",
        "fleet.services",
        "fleet.registry_auth | fleet.mqtt | fleet.db",
        "fleet.domain",
    ]
    assert "ignore_imports" not in layers


def test_the_domain_may_import_no_other_module_of_the_project() -> None:
    pure = contract("fleet.domain imports nothing of the project")
    siblings = {f"fleet.{m.name}" for m in pkgutil.iter_modules(fleet.__path__)}
    assert "fleet.domain" in siblings
    # Every other module of the server, a new one too, is listed: none may be imported.
    assert set(pure["forbidden_modules"]) == (siblings - {"fleet.domain"}) | {"device_agent"}
    assert pure["source_modules"] == ["fleet.domain"] and "ignore_imports" not in pure


def test_the_agent_never_imports_the_server() -> None:
    agent = contract("device_agent never imports fleet")
    assert (agent["source_modules"], agent["forbidden_modules"]) == (["device_agent"], ["fleet"])
    assert "ignore_imports" not in agent


def test_the_server_imports_only_the_agent_s_protocol() -> None:
    listed = contract("The server imports from the agent only device_agent.protocol")
    assert (listed["source_modules"], listed["forbidden_modules"]) == (["fleet"], ["device_agent"])
    assert sorted(listed["ignore_imports"]) == [
        "fleet.** -> device_agent.protocol",
        "fleet.** -> device_agent.protocol.**",
    ]


AGENT_SUBPACKAGES = ["commands", "runtime", "pull", "state", "protocol"]


def test_the_agent_is_layered_commands_runtime_pull_state_protocol() -> None:
    layers = contract("The agent's layers: commands -> runtime -> pull -> state -> protocol")
    assert layers["type"] == "layers" and "ignore_imports" not in layers
    assert layers["layers"] == [f"device_agent.{name}" for name in AGENT_SUBPACKAGES]
    # Every subpackage of the agent is a layer: a new one must find its place.
    found = {m.name for m in pkgutil.iter_modules(device_agent.__path__) if m.ispkg}
    assert found == set(AGENT_SUBPACKAGES)


def test_the_protocol_imports_only_the_stdlib_and_cryptography() -> None:
    graph = grimp.build_graph("device_agent", include_external_packages=True)
    protocol = {m for m in graph.modules if m.startswith("device_agent.protocol")}
    outside = {
        imported
        for module in protocol
        for imported in graph.find_modules_directly_imported_by(module)
        if imported not in protocol
    }
    assert outside - set(sys.stdlib_module_names) == {"cryptography"}, outside


@pytest.mark.parametrize("package", ["device_agent", "fleet"])
def test_no_import_cycle(package: str) -> None:
    graph = grimp.build_graph(package)
    cycles = [
        (module, imported)
        for module in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []


def test_no_entry_point_opens_a_session_or_uses_a_model() -> None:
    edges = contract("Entry points never touch the database: only the services open sessions")
    assert edges["source_modules"] == ["fleet.api", "fleet.cli", "fleet.scheduler", "fleet.web"]
    assert edges["forbidden_modules"] == ["fleet.db", "sqlalchemy", "sqlmodel"]
    # Only the pages' status-name constants, each import named.
    assert all(" -> fleet.db." in rule and "*" not in rule for rule in edges["ignore_imports"])
    assert all(rule.startswith("fleet.web.views.") for rule in edges["ignore_imports"])
