"""List commands fetch page after page, print as pages arrive, and stop at ``--top``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.cli import listing
from fleet.cli.client import ApiClient
from fleet.cli.output import Column, render_table
from fleet.cli.token import TOKEN_COLUMNS
from fleet.services import Services
from tests.cli.conftest import Fleet

PULL = "_repositories_pull"
NAMES = [f"token-{i:02d}" for i in range(8)]


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Pages of 3 rows, and the query of every GET the CLI sends."""
    monkeypatch.setattr(listing, "PAGE_SIZE", 3)
    sent: list[dict[str, Any]] = []
    real = ApiClient.call

    def call(self: ApiClient, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        if method == "GET":
            sent.append({"path": path, **(params or {})})
        return real(self, method, path, body, params)

    monkeypatch.setattr(ApiClient, "call", call)
    return sent


@pytest.fixture
def tokens(services: Services) -> Services:
    for name in NAMES:
        services.tokens.create(name, scope_map=PULL, actor="test")
    return services


def test_json_is_one_array_of_every_page(fleet: Fleet, tokens: Services, requests: list) -> None:
    out = fleet.ok("token", "list")
    rows = json.loads(out)
    assert [t["name"] for t in rows] == NAMES
    assert out == json.dumps(rows, indent=2) + "\n"  # the unpaged command's very text
    assert [r.get("limit") for r in requests] == [3, 3, 3]
    assert "cursor" not in requests[0] and requests[1]["cursor"] != requests[2]["cursor"]


def test_top_stops_fetching_early(fleet: Fleet, tokens: Services, requests: list) -> None:
    rows = fleet.json("token", "list", "--top", "5")
    assert [t["name"] for t in rows] == NAMES[:5]
    assert [r["limit"] for r in requests] == [3, 2]  # the third page is never asked for
    requests.clear()
    assert len(fleet.json("token", "list", "--top", "2")) == 2 and len(requests) == 1
    assert len(fleet.json("token", "list", "--top", "100")) == len(NAMES)


def test_top_must_be_positive(fleet: Fleet) -> None:
    result = fleet.run("token", "list", "--top", "0")
    assert result.exit_code == 2 and "--top" in result.output


def test_tsv_and_table_rows_from_every_page(fleet: Fleet, tokens: Services, requests: list) -> None:
    lines = fleet.ok("token", "list", "--output", "tsv").splitlines()
    assert [[c for c in line.split("\t") if c.startswith("token-")] for line in lines] == [
        [name] for name in NAMES
    ]
    table = fleet.ok("token", "list", "--output", "table", "--top", "7").splitlines()
    assert table[0].split()[:2] == ["NAME", "SCOPE"] and set(table[1]) <= {"-", " "}
    assert [line.split()[0] for line in table[2:]] == NAMES[:7]
    starts = {line.index(PULL) for line in table[2:]}  # columns stay aligned across pages
    assert starts == {table[0].index("SCOPE MAP")}


def test_query_sees_the_whole_list(fleet: Fleet, tokens: Services, requests: list) -> None:
    assert fleet.json("token", "list", "--query", "length(@)") == len(NAMES)
    assert fleet.json("token", "list", "--top", "4", "--query", "[-1].name") == NAMES[3]
    tsv = fleet.ok("token", "list", "--query", "[?name=='token-07'].name", "-o", "tsv")
    assert tsv.strip() == "token-07"


def test_empty_lists(fleet: Fleet, requests: list) -> None:
    assert fleet.json("token", "list") == []
    assert fleet.ok("group", "list", "-o", "tsv") == ""
    header = fleet.ok("device", "list", "-o", "table").splitlines()
    assert header[0].split()[:3] == ["DEVICE", "GROUP", "STATUS"] and len(header) == 2


def test_other_lists_walk_every_page(fleet: Fleet, tokens: Services, requests: list) -> None:
    maps = fleet.json("scope-map", "list", "--query", "[].name")
    assert len(maps) == 5 and maps == sorted(maps)
    assert len({r["cursor"] for r in requests if "cursor" in r}) == 1
    for i in range(4):
        tokens.groups.create(f"group-{i}", scope_map=PULL, actor="test")
    assert fleet.json("group", "list", "--query", "[].name") == [f"group-{i}" for i in range(4)]
    assert fleet.json("device", "list", "--group", "group-1", "--status", "active") == []
    assert requests[-1] == {"path": "/devices", "group": "group-1", "status": "active", "limit": 3}


# -- streaming, seen from inside: each page is printed before the next one is asked for --------
ROWS = [{"name": f"row-{i}", "n": i, "nested": {"a": [i]}} for i in range(7)]
COLUMNS = [Column("NAME", "name"), Column("N", "n")]


def _pages(capsys: pytest.CaptureFixture[str], printed: list[str]) -> Iterator[list[Any]]:
    for start in range(0, len(ROWS), 3):
        printed.append(capsys.readouterr().out)  # what was out before this page was fetched
        yield ROWS[start : start + 3]
    printed.append(capsys.readouterr().out)


@pytest.mark.parametrize("output", ["json", "tsv", "table"])
def test_each_page_is_printed_before_the_next_is_fetched(
    capsys: pytest.CaptureFixture[str], output: str
) -> None:
    printed: list[str] = []
    listing.stream(_pages(capsys, printed), output, None, COLUMNS)
    printed.append(capsys.readouterr().out)  # what came after the last page
    assert printed[0] == "" and all(printed[1:4])  # something new after every page
    text = "".join(printed)
    if output == "json":
        assert json.loads(text) == ROWS and text == json.dumps(ROWS, indent=2) + "\n"
        assert '"row-0"' in printed[1] and '"row-3"' not in printed[1]
    elif output == "tsv":
        assert text.splitlines() == [f"row-{i}\t{i}" for i in range(7)]
    else:
        assert text == render_table(ROWS, COLUMNS) + "\n"


def test_query_waits_for_every_page(capsys: pytest.CaptureFixture[str]) -> None:
    printed: list[str] = []
    listing.stream(_pages(capsys, printed), "json", "[].n | sum(@)", COLUMNS)
    printed.append(capsys.readouterr().out)
    assert printed[:-1] == ["", "", "", ""] and json.loads(printed[-1]) == sum(range(7))


def test_token_columns_render_the_same_paged_or_not() -> None:
    rows = [
        {
            "name": name,
            "scopeMapId": f"/registries/r/scopeMaps/{PULL}",
            "status": "enabled",
            "credentials": {"passwords": []},
            "creationDate": "2026-01-01T00:00:00+00:00",
        }
        for name in ("a", "bbbbbbbbbbbbbbbbbb", "cc")
    ]
    chunks = list(listing._table_chunks(iter([rows]), TOKEN_COLUMNS))
    assert chunks == [render_table(rows, TOKEN_COLUMNS) + "\n"]


def test_device_list_filters_and_sorts(fleet: Fleet, services: Services, requests: list) -> None:
    from datetime import timedelta

    from tests.services.test_device_list import Row, add

    services.groups.create("east-side", scope_map=PULL, inactivity_limit_days=7, actor="t")
    add(
        services,
        [Row(f"pi-{i:02d}", group="east-side", last_seen=timedelta(days=i)) for i in range(5)]
        + [Row("rpi-00", pending=1), Row("pi-off", status="disabled")],
    )
    rows = fleet.json("device", "list", "--prefix", "pi-", "--sort", "last_seen", "--desc")
    assert [d["deviceId"] for d in rows] == ["pi-off", "pi-00", "pi-01", "pi-02", "pi-03", "pi-04"]
    assert requests[0] == {"path": "/devices", "q": "pi-", "sort": "last_seen", "dir": "desc",
                           "limit": 3}  # fmt: skip
    silent = [d["deviceId"] for d in fleet.json("device", "list", "--not-seen")]
    assert silent == ["rpi-00"]  # never seen, enrolled 100 days ago; pi-0x seen within 7 d
    assert [d["deviceId"] for d in fleet.json("device", "list", "--pending")] == ["rpi-00"]
    assert fleet.json("device", "list", "--expiring") == []
