"""``fleet token check-access`` and ``fleet scope-map check-access`` against a live server."""

from __future__ import annotations

from tests.cli.conftest import Fleet


def _reference(fleet: Fleet) -> None:
    fleet.ok(
        "scope-map", "create", "--name", "MyScopeMap",
        "--repository", "sample/*", "content/read",
        "--repository", "sample/teama/*", "content/write",
        "--repository", "sample/teama/projectb", "content/delete",
    )  # fmt: skip
    fleet.ok("token", "create", "--name", "MyToken", "--scope-map", "MyScopeMap")


def test_token_check_access_shows_the_decision_and_the_rules(fleet: Fleet) -> None:
    _reference(fleet)
    out = fleet.json(
        "token", "check-access", "--name", "MyToken",
        "--repository", "sample/teama/projectb", "--action", "content/delete",
    )  # fmt: skip
    assert out["decision"] == "allowed"
    assert [(r["repository"], r["grantsAction"]) for r in out["matchedRules"]] == [
        ("sample/*", False),
        ("sample/teama/*", False),
        ("sample/teama/projectb", True),
    ]
    denied = fleet.ok(
        "token", "check-access", "--name", "MyToken", "--repository", "sample/teama/projectc",
        "--action", "content/delete", "--query", "[decision, reasons[0].code]", "--output", "tsv",
    )  # fmt: skip
    assert denied.split() == ["denied", "ActionNotGranted"]


def test_a_disabled_token_is_denied_and_the_table_says_why(fleet: Fleet) -> None:
    _reference(fleet)
    fleet.ok("token", "update", "--name", "MyToken", "--status", "disabled")
    table = fleet.ok(
        "token", "check-access", "-n", "MyToken", "--repository", "sample/x",
        "-a", "content/read", "--output", "table",
    )  # fmt: skip
    header, _, row = table.splitlines()
    assert header.split()[:3] == ["DECISION", "REPOSITORY", "ACTION"]
    assert row.startswith("denied") and "sample/*: content/read (grants)" in row
    assert "token 'MyToken' is disabled" in row


def test_scope_map_check_access(fleet: Fleet) -> None:
    _reference(fleet)
    out = fleet.json(
        "scope-map", "check-access", "--name", "_repositories_pull",
        "--repository", "anything/at-all", "--action", "content/read",
    )  # fmt: skip
    assert out["decision"] == "allowed" and out["token"] is None
    assert out["matchedRules"] == [
        {"repository": "*", "actions": ["content/read"], "grantsAction": True}
    ]


def test_bad_input_is_refused_with_a_clear_message(fleet: Fleet) -> None:
    _reference(fleet)
    both = fleet.run(
        "token", "check-access", "--name", "MyToken",
        "--repository", "sample/x", "content/read", "--action", "content/read",
    )  # fmt: skip
    assert both.exit_code == 2
    assert "--repository takes one repository name" in both.stderr
    bad_action = fleet.run(
        "token", "check-access", "--name", "MyToken", "--repository", "x", "--action", "pull"
    )
    assert bad_action.exit_code == 2 and "'pull' is not one of" in bad_action.stderr
    bad_name = fleet.run(
        "token", "check-access", "--name", "MyToken", "--repository", "Sample/X",
        "--action", "content/read",
    )  # fmt: skip
    assert bad_name.exit_code == 1
    assert "invalid repository name 'Sample/X'" in bad_name.stderr
    assert "InvalidRepositoryName, HTTP 400" in bad_name.stderr
    unknown = fleet.run(
        "scope-map", "check-access", "--name", "NoSuchMap", "--repository", "x",
        "--action", "content/read",
    )  # fmt: skip
    assert unknown.exit_code == 1 and "ScopeMapNotFound, HTTP 404" in unknown.stderr
