"""Every ``az acr token`` and ``az acr scope-map`` command of the reference, as ``fleet``.

The commands are the reference's, word for word, with ``az acr`` replaced by ``fleet``.
"""

from __future__ import annotations

import json

from tests.cli.conftest import Fleet


def test_create_token_and_specify_repositories(fleet: Fleet) -> None:
    out = fleet.json(
        "token",
        "create",
        "--name",
        "MyToken",
        "--registry",
        "myregistry",
        "--repository",
        "samples/hello-world",
        "content/write",
        "content/read",
        "--output",
        "json",
    )
    assert set(out) >= {
        "creationDate",
        "credentials",
        "id",
        "name",
        "objectId",
        "provisioningState",
        "scopeMapId",
        "status",
        "type",
    }
    assert out["name"] == "MyToken" and out["status"] == "enabled"
    assert out["credentials"]["username"] == "MyToken"
    assert out["credentials"]["certificates"] == []
    passwords = out["credentials"]["passwords"]
    assert [p["name"] for p in passwords] == ["password1", "password2"]
    assert all(set(p) == {"creationTime", "expiry", "name", "value"} for p in passwords)
    assert all(p["expiry"] is None for p in passwords)
    assert out["scopeMapId"].endswith("/scopeMaps/MyToken-scope-map")
    # "The passwords can't be retrieved again"
    shown = fleet.json("token", "show", "--name", "MyToken", "--registry", "myregistry")
    assert all("value" not in p for p in shown["credentials"]["passwords"])


def test_create_token_and_specify_scope_map(fleet: Fleet) -> None:
    made = fleet.json(
        "scope-map",
        "create",
        "--name",
        "MyScopeMap",
        "--registry",
        "myregistry",
        "--repository",
        "samples/hello-world",
        "content/write",
        "content/read",
        "--description",
        "Sample scope map",
    )
    assert made["description"] == "Sample scope map"
    assert made["actions"] == [
        "repositories/samples/hello-world/content/read",
        "repositories/samples/hello-world/content/write",
    ]
    out = fleet.json(
        "token",
        "create",
        "--name",
        "MyToken",
        "--registry",
        "myregistry",
        "--scope-map",
        "MyScopeMap",
    )
    assert out["scopeMapId"].endswith("/scopeMaps/MyScopeMap")
    assert len(out["credentials"]["passwords"]) == 2


def test_wildcards(fleet: Fleet) -> None:
    made = fleet.json(
        "scope-map",
        "create",
        "--name",
        "MyScopeMapWildcard",
        "--registry",
        "myregistry",
        "--repository",
        "samples/*",
        "content/write",
        "content/read",
        "--description",
        "Sample scope map with wildcards",
    )
    assert "repositories/samples/*/content/write" in made["actions"]
    fleet.json(
        "token",
        "create",
        "--name",
        "MyTokenWildcard",
        "--registry",
        "myregistry",
        "--scope-map",
        "MyScopeMapWildcard",
    )
    fleet.ok("token", "delete", "--name", "MyTokenWildcard", "--yes")
    direct = fleet.json(
        "token",
        "create",
        "--name",
        "MyTokenWildcard",
        "--registry",
        "myregistry",
        "--repository",
        "samples/*",
        "content/write",
        "content/read",
    )
    assert direct["scopeMapId"].endswith("MyTokenWildcard-scope-map")
    root = fleet.json(
        "token",
        "create",
        "--name",
        "MyTokenRoot",
        "--registry",
        "myregistry",
        "--repository",
        "*",
        "content/write",
        "content/read",
    )
    assert root["status"] == "enabled"
    root_map = fleet.json("scope-map", "show", "--name", "MyTokenRoot-scope-map")
    assert root_map["actions"] == ["repositories/*/content/read", "repositories/*/content/write"]


def test_invalid_wildcards_are_refused_with_the_rule_named(fleet: Fleet) -> None:
    for bad in ["sample/*/teamA", "sample/teamA*", "sample/teamA/*/projectB/*"]:
        result = fleet.run(
            "scope-map", "create", "--name", "BadScopeMap", "--repository", bad, "content/read"
        )
        assert result.exit_code != 0
        assert bad in result.stderr and "InvalidRule" in result.stderr
        assert result.stdout == ""
    names = fleet.json("scope-map", "list", "--query", "[].name")
    assert "BadScopeMap" not in names


def test_the_reference_wildcard_example_is_accepted_as_written(fleet: Fleet) -> None:
    made = fleet.json(
        "scope-map",
        "create",
        "--name",
        "TeamAScopeMap",
        "--repository",
        "sample/teamA/*",
        "content/write",
        "--repository",
        "sample/teamA/projectB",
        "content/delete",
    )
    assert made["actions"] == [
        "repositories/sample/teamA/*/content/write",
        "repositories/sample/teamA/projectB/content/delete",
    ]


def test_update_scope_map_and_delete_and_metadata_actions(fleet: Fleet) -> None:
    fleet.json(
        "scope-map",
        "create",
        "--name",
        "MyScopeMap",
        "--registry",
        "myregistry",
        "--repository",
        "samples/hello-world",
        "content/write",
        "content/read",
        "--description",
        "Sample scope map",
    )
    out = fleet.json(
        "scope-map",
        "update",
        "--name",
        "MyScopeMap",
        "--registry",
        "myregistry",
        "--add-repository",
        "samples/nginx",
        "content/write",
        "content/read",
        "--remove-repository",
        "samples/hello-world",
        "content/write",
    )
    assert out["actions"] == [
        "repositories/samples/hello-world/content/read",
        "repositories/samples/nginx/content/read",
        "repositories/samples/nginx/content/write",
    ]
    out = fleet.json(
        "scope-map",
        "update",
        "--name",
        "MyScopeMap",
        "--registry",
        "myregistry",
        "--add-repository",
        "samples/nginx",
        "content/delete",
    )
    assert "repositories/samples/nginx/content/delete" in out["actions"]
    out = fleet.json(
        "scope-map",
        "update",
        "--name",
        "MyScopeMap",
        "--registry",
        "myregistry",
        "--add-repository",
        "samples/hello-world",
        "metadata/read",
    )
    assert "repositories/samples/hello-world/metadata/read" in out["actions"]


def test_list_scope_maps_table(fleet: Fleet) -> None:
    fleet.json(
        "scope-map",
        "create",
        "--name",
        "MyScopeMap",
        "--repository",
        "samples/x",
        "content/read",
        "--description",
        "Sample scope map",
    )
    lines = fleet.ok(
        "scope-map", "list", "--registry", "myregistry", "--output", "table"
    ).splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CREATION", "DATE", "DESCRIPTION"]
    assert set(lines[1]) <= {"-", " "}
    rows = [line.split()[:2] for line in lines[2:]]
    assert rows[:5] == [
        ["_repositories_admin", "SystemDefined"],
        ["_repositories_pull", "SystemDefined"],
        ["_repositories_pull_metadata_read", "SystemDefined"],
        ["_repositories_push", "SystemDefined"],
        ["_repositories_push_metadata_write", "SystemDefined"],
    ]
    assert ["MyScopeMap", "UserDefined"] in rows
    date = lines[-1].split()[2]
    assert len(date) == 20 and date.endswith("Z")  # 2020-01-20T09:44:24Z


def test_show_and_list_tokens(fleet: Fleet) -> None:
    fleet.json("token", "create", "--name", "MyToken", "--repository", "samples/a", "content/read")
    shown = fleet.json(
        "scope-map", "show", "--name", "MyToken-scope-map", "--registry", "myregistry"
    )
    assert shown["scopeMapType"] == "UserDefined"
    table = fleet.ok("token", "list", "--registry", "myregistry", "--output", "table")
    assert table.splitlines()[0].split()[:4] == ["NAME", "SCOPE", "MAP", "STATUS"]
    assert "MyToken  " in table and "MyToken-scope-map" in table


def test_regenerate_password_query_tsv(fleet: Fleet) -> None:
    fleet.json("token", "create", "--name", "MyToken", "--repository", "samples/a", "content/read")
    value = fleet.ok(
        "token",
        "credential",
        "generate",
        "--name",
        "MyToken",
        "--registry",
        "myregistry",
        "--expiration-in-days",
        "30",
        "--password1",
        "--query",
        "passwords[0].value",
        "--output",
        "tsv",
    ).strip()
    assert value.startswith("fltp_") and "\t" not in value and "\n" not in value
    shown = fleet.json("token", "show", "--name", "MyToken")
    expiries = {p["name"]: p["expiry"] for p in shown["credentials"]["passwords"]}
    assert expiries["password1"] is not None and expiries["password2"] is None


def test_update_token_scope_map_and_status(fleet: Fleet) -> None:
    fleet.json("token", "create", "--name", "MyToken", "--repository", "samples/a", "content/read")
    fleet.json(
        "scope-map",
        "create",
        "--name",
        "MyNewScopeMap",
        "--repository",
        "samples/b",
        "content/read",
    )
    out = fleet.json(
        "token",
        "update",
        "--name",
        "MyToken",
        "--registry",
        "myregistry",
        "--scope-map",
        "MyNewScopeMap",
    )
    assert out["scopeMapId"].endswith("/MyNewScopeMap")
    out = fleet.json(
        "token", "update", "--name", "MyToken", "--registry", "myregistry", "--status", "disabled"
    )
    assert out["status"] == "disabled"


def test_delete_token_asks_first(fleet: Fleet) -> None:
    fleet.json("token", "create", "--name", "MyToken", "--repository", "samples/a", "content/read")
    refused = fleet.run(
        "token", "delete", "--name", "MyToken", "--registry", "myregistry", input="n\n"
    )
    assert refused.exit_code != 0
    assert fleet.json("token", "show", "--name", "MyToken")["name"] == "MyToken"
    fleet.ok("token", "delete", "--name", "MyToken", "--registry", "myregistry", input="y\n")
    gone = fleet.run("token", "show", "--name", "MyToken")
    assert gone.exit_code == 1 and "TokenNotFound" in gone.stderr


def test_scope_map_delete_in_use_warns(fleet: Fleet) -> None:
    fleet.json(
        "scope-map", "create", "--name", "MyScopeMap", "--repository", "samples/a", "content/read"
    )
    fleet.json("token", "create", "--name", "MyToken", "--scope-map", "MyScopeMap")
    refused = fleet.run("scope-map", "delete", "--name", "MyScopeMap", input="n\n")
    assert "MyToken will be left with no permissions" in refused.stderr
    assert refused.exit_code != 0
    out = json.loads(fleet.ok("scope-map", "delete", "--name", "MyScopeMap", "--yes"))
    assert out == {"tokensWithoutPermissions": ["MyToken"]}
    assert fleet.json("token", "show", "--name", "MyToken")["scopeMapId"] is None


def test_credential_delete_and_no_passwords(fleet: Fleet) -> None:
    out = fleet.json(
        "token",
        "create",
        "--name",
        "MyToken",
        "--scope-map",
        "_repositories_pull",
        "--no-passwords",
    )
    assert out["credentials"]["passwords"] == []
    fleet.ok("token", "credential", "generate", "--name", "MyToken")
    out = fleet.json("token", "credential", "delete", "--name", "MyToken", "--password2")
    assert [p["name"] for p in out["credentials"]["passwords"]] == ["password1"]


def test_errors_go_to_stderr_with_nonzero_exit(fleet: Fleet) -> None:
    result = fleet.run("token", "show", "--name", "Missing")
    assert result.exit_code == 1 and result.stdout == ""
    assert "token 'Missing' does not exist" in result.stderr
    both = fleet.run(
        "token",
        "create",
        "--name",
        "MyToken",
        "--scope-map",
        "x",
        "--repository",
        "a",
        "content/read",
    )
    assert both.exit_code == 2 and "not both" in both.stderr
    noact = fleet.run("scope-map", "create", "--name", "MyScopeMap", "--repository", "a")
    assert noact.exit_code == 2 and "at least one action" in noact.stderr
    badq = fleet.run("token", "list", "--query", "[[")
    assert badq.exit_code == 2 and "JMESPath" in badq.stderr


def test_no_server_or_key_is_a_clear_error(fleet: Fleet) -> None:
    offline = Fleet("http://127.0.0.1:9", fleet.key).run("token", "list")
    assert offline.exit_code == 1 and "cannot reach the fleet server" in offline.stderr
    nokey = Fleet(fleet.url, "").run("token", "list")
    assert nokey.exit_code == 1 and "FLEET_API_KEY" in nokey.stderr
    badkey = Fleet(fleet.url, "flta_nope").run("token", "list")
    assert badkey.exit_code == 1 and "Unauthorized" in badkey.stderr
