"""Paged lists on both databases: whole walks, changes between pages, cursors, query counts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from fleet.db.devices import ACTIVE, DELIVERY_ACKED, DELIVERY_PENDING, DISABLED, Delivery, Device
from fleet.domain.errors import ValidationError
from fleet.domain.system_maps import SYSTEM_SCOPE_MAP_NAMES
from fleet.services import Services
from fleet.services.paging import MAX_LIMIT, Cursors, Page, check_limit, parse_limit
from tests.support.statements import counted

ME = "test"
PULL = "_repositories_pull"


def walk(list_page: Callable[..., Page[Any]], limit: int, **filters: Any) -> list[list[Any]]:
    """Every page of a list, following its cursors."""
    pages: list[list[Any]] = []
    cursor = None
    for _ in range(10_000):
        page = list_page(limit=limit, cursor=cursor, **filters)
        pages.append(list(page.items))
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the walk never ended")


def db_order(services: Services) -> list[str]:
    return [t.name for t in services.tokens.list(limit=MAX_LIMIT).items]


def make_tokens(services: Services, names: list[str], scope_map: str = PULL) -> None:
    for name in names:
        services.tokens.create(name, scope_map=scope_map, actor=ME)


def add_devices(services: Services, group: str, ids: list[str], status: str = ACTIVE) -> None:
    """Device rows written directly: what enrollment leaves, without a broker."""
    with services.ctx.db.session() as s:
        from fleet.services.groups import get_group

        group_id = get_group(s, group).id
        for device_id in ids:
            device = Device(
                device_id=device_id,
                group_id=group_id,
                status=status,
                x25519_public="x",
                ed25519_public="e",
                mqtt_username=device_id,
                enrolled_at=services.ctx.clock(),
            )
            s.add(device)
            s.flush()
            for version, state in ((1, DELIVERY_ACKED), (2, DELIVERY_PENDING)):
                s.add(
                    Delivery(
                        device_pk=device.id,
                        version=version,
                        kind="credentials",
                        topic="t",
                        state=state,
                        created_at=services.ctx.clock(),
                    )
                )


# -- limits and cursors, without a database -------------------------------------------------
@pytest.mark.parametrize("limit", [1, 2, 100, MAX_LIMIT])
def test_limits_in_range(limit: int) -> None:
    assert check_limit(limit) == limit
    assert parse_limit(str(limit)) == limit


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, 10**9, True])
def test_limits_out_of_range(limit: int) -> None:
    with pytest.raises(ValidationError) as caught:
        check_limit(limit)
    assert caught.value.code == "InvalidLimit" and "1 to 1000" in caught.value.message


@pytest.mark.parametrize("text", ["0", "1001", "abc", "1.5", "-3", " ", "1e3"])
def test_limit_parameters_refused(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_limit(text)
    assert caught.value.code == "InvalidLimit"


def test_no_limit_means_the_default() -> None:
    assert parse_limit(None) == parse_limit("") == 100


def test_cursors_round_trip(services: Services) -> None:
    cursors = Cursors(services.ctx.hasher)
    for key in [("a",), ("SystemDefined", "_repositories_pull"), ("ünï/côdé",), (7,)]:
        shape = tuple(type(part) for part in key)
        assert cursors.decode("tokens", cursors.encode("tokens", key), shape) == key


def _tampered(cursor: str) -> list[str]:
    body, tag = cursor.split(".")
    other = base64.urlsafe_b64encode(json.dumps(["zzz"]).encode()).decode().rstrip("=")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    return [
        f"{other}.{tag}",  # another position under the old tag
        f"{flipped}.{tag}",
        f"{body}.{tag[:-1]}0" if tag[-1] != "0" else f"{body}.{tag[:-1]}1",
        body,  # no tag
        f"{body}.",
        cursor[:-3],
        "",
        "not a cursor",
        "%%%.%%%",
        "x" * 5000,
    ]


def test_tampered_or_foreign_cursors_are_refused(services: Services) -> None:
    cursors = Cursors(services.ctx.hasher)
    good = cursors.encode("tokens", ("b",))
    for bad in _tampered(good):
        with pytest.raises(ValidationError) as caught:
            cursors.decode("tokens", bad, (str,))
        assert caught.value.code == "InvalidCursor"
        assert "nextCursor" in caught.value.message
    with pytest.raises(ValidationError):  # another list's cursor
        cursors.decode("groups", good, (str,))
    with pytest.raises(ValidationError):  # a key of another shape, even when tagged
        cursors.decode("tokens", cursors.encode("tokens", (1,)), (str,))
    with pytest.raises(ValidationError):
        cursors.decode("tokens", good, (str, str))


# -- walks ------------------------------------------------------------------------------------
TOKEN_NAMES = [f"tok-{i:03d}" for i in range(23)] + ["Alpha", "zeta-z", "mmm-1", "mmm-10", "mmm-2x"]


@pytest.mark.parametrize("limit", [1, 4, 27, 28, 29, MAX_LIMIT])
def test_token_walk_sees_every_token_once_in_order(services: Services, limit: int) -> None:
    make_tokens(services, TOKEN_NAMES)
    pages = walk(services.tokens.list, limit)
    names = [t.name for page in pages for t in page]
    assert names == db_order(services)  # the database's collation decides the order
    assert sorted(names) == sorted(TOKEN_NAMES)
    assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit
    assert len(pages) == -(-len(TOKEN_NAMES) // limit)
    assert all(t.scope_map == PULL and len(t.passwords) == 2 for page in pages for t in page)
    assert all(p.value is None for page in pages for t in page for p in t.passwords)
    assert pages[-1][-1] == services.tokens.show(pages[-1][-1].name)  # as shown alone


def test_empty_list_is_one_empty_last_page(services: Services) -> None:
    assert services.tokens.list() == Page((), None)
    assert services.groups.list() == Page((), None)
    assert services.devices.list() == Page((), None)


def test_rows_changed_between_pages_never_shift_the_walk(services: Services) -> None:
    make_tokens(services, [f"tk-{i:02d}" for i in range(10)])
    first = services.tokens.list(limit=4)
    assert [t.name for t in first.items] == ["tk-00", "tk-01", "tk-02", "tk-03"]
    services.tokens.delete("tk-01", actor=ME)  # already read
    services.tokens.delete("tk-04", actor=ME)  # next in line
    services.tokens.delete("tk-07", actor=ME)
    make_tokens(services, ["tk-00a", "tk-05a", "tk-99"])  # one behind the cursor, two ahead
    seen = [t.name for t in first.items]
    cursor = first.next_cursor
    while cursor is not None:
        page = services.tokens.list(limit=4, cursor=cursor)
        seen += [t.name for t in page.items]
        cursor = page.next_cursor
    # every row that existed throughout is seen exactly once; rows added ahead are seen;
    # a row added behind the cursor is not (it belongs to pages already read)
    expected = ["00", "01", "02", "03", "05", "05a", "06", "08", "09", "99"]
    assert seen == [f"tk-{n}" for n in expected]


def test_last_row_deleted_before_the_next_page(services: Services) -> None:
    make_tokens(services, ["tok-a", "tok-b", "tok-c"])
    first = services.tokens.list(limit=2)
    services.tokens.delete("tok-b", actor=ME)  # the cursor's own row
    services.tokens.delete("tok-c", actor=ME)
    assert services.tokens.list(limit=2, cursor=first.next_cursor) == Page((), None)


def test_scope_map_walk_system_maps_first_across_the_type_boundary(services: Services) -> None:
    users = ["A-map", "b-map", "Z-map-2", "zzzzz"]
    for name in users:
        services.scope_maps.create(name, [], actor=ME)
    for limit in (1, 2, 3, 5, 6):
        names = [m.name for page in walk(services.scope_maps.list, limit) for m in page]
        assert names[:5] == sorted(SYSTEM_SCOPE_MAP_NAMES)
        assert sorted(names[5:]) == sorted(users) and len(names) == 9
        assert names == [m.name for m in services.scope_maps.list(limit=MAX_LIMIT).items]


def test_scope_map_tokens_walk_and_foreign_cursor(services: Services) -> None:
    services.scope_maps.create("map-one", [], actor=ME)
    services.scope_maps.create("map-two", [], actor=ME)
    make_tokens(services, [f"user-{i}" for i in range(7)], scope_map="map-one")
    make_tokens(services, ["other"], scope_map="map-two")
    pages = walk(lambda **kw: services.scope_maps.tokens_using("map-one", **kw), 3)
    assert [n for page in pages for n in page] == [f"user-{i}" for i in range(7)]
    cursor = services.scope_maps.tokens_using("map-one", limit=3).next_cursor
    assert cursor is not None
    with pytest.raises(ValidationError, match="not valid for this list"):
        services.scope_maps.tokens_using("map-two", cursor=cursor)
    with pytest.raises(ValidationError):  # a tokens cursor is not a scope-map-tokens cursor
        services.tokens.list(cursor=cursor)


def test_group_walk_with_counts_and_secrets(services: Services) -> None:
    names = [f"group-{i}" for i in range(5)]
    for name in names:
        services.groups.create(name, scope_map=PULL, actor=ME)
    services.groups.create_secret("group-3", actor=ME)
    services.groups.create_secret("group-3", one_time=True, actor=ME)
    add_devices(services, "group-1", ["dev1", "dev2"])
    pages = walk(services.groups.list, 2)
    groups = [g for page in pages for g in page]
    assert [g.name for g in groups] == names and [len(p) for p in pages] == [2, 2, 1]
    by_name = {g.name: g for g in groups}
    assert by_name["group-1"].devices == 2 and by_name["group-0"].devices == 0
    assert [s.kind for s in by_name["group-3"].secrets] == ["secret", "code"]
    assert all(s.value is None for s in by_name["group-3"].secrets)
    assert by_name["group-3"] == services.groups.show("group-3")


def test_a_groups_view_carries_only_its_newest_secrets(services: Services) -> None:
    """A group that issued a code per device held them all in every view and in each row of
    GET /groups: unbounded. The view carries the newest MAX_EMBEDDED_SECRETS (oldest first)
    and says when there are more; the whole list is paged."""
    from fleet.services.groups import MAX_EMBEDDED_SECRETS

    services.groups.create("group-big", scope_map=PULL, actor=ME)
    services.groups.create("group-small", scope_map=PULL, actor=ME)
    made = [
        services.groups.create_secret("group-big", one_time=True, actor=ME).id
        for _ in range(MAX_EMBEDDED_SECRETS + 5)
    ]
    small = services.groups.create_secret("group-small", actor=ME).id
    big = services.groups.show("group-big")
    assert [x.id for x in big.secrets] == made[-MAX_EMBEDDED_SECRETS:]
    assert big.secrets_truncated
    listed = {g.name: g for g in services.groups.list(limit=10).items}
    assert listed["group-big"] == big
    assert [x.id for x in listed["group-small"].secrets] == [small]
    assert not listed["group-small"].secrets_truncated
    assert len(walk(lambda **kw: services.groups.secrets("group-big", **kw), 10)) == 3


def test_secret_walk_per_group(services: Services) -> None:
    services.groups.create("group-a", scope_map=PULL, actor=ME)
    services.groups.create("group-b", scope_map=PULL, actor=ME)
    made = [
        services.groups.create_secret("group-a", one_time=i % 2 == 1, actor=ME) for i in range(7)
    ]
    services.groups.create_secret("group-b", actor=ME)
    services.groups.revoke_secret("group-a", made[2].id, actor=ME)
    for limit in (1, 3, 7, 8):
        pages = walk(lambda **kw: services.groups.secrets("group-a", **kw), limit)
        walked = [x for page in pages for x in page]
        assert [x.id for x in walked] == [m.id for m in made]
        assert all(x.value is None for x in walked) and walked[2].revoked_at is not None
    cursor = services.groups.secrets("group-a", limit=2).next_cursor
    with pytest.raises(ValidationError):
        services.groups.secrets("group-b", cursor=cursor)


def test_device_walks_with_filters(services: Services) -> None:
    services.groups.create("east-side", scope_map=PULL, actor=ME)
    services.groups.create("west-side", scope_map=PULL, actor=ME)
    add_devices(services, "east-side", [f"e{i:02d}" for i in range(9)])
    add_devices(services, "east-side", ["e-off1", "e-off2"], status=DISABLED)
    add_devices(services, "west-side", [f"w{i}" for i in range(4)])
    add_devices(services, "west-side", ["w-off"], status=DISABLED)

    def ids(limit: int, **filters: Any) -> list[str]:
        return [d.device_id for page in walk(services.devices.list, limit, **filters) for d in page]

    every = sorted([f"e{i:02d}" for i in range(9)] + ["e-off1", "e-off2", "w-off"])
    every = sorted(every + [f"w{i}" for i in range(4)])
    for limit in (1, 3, 100):
        assert ids(limit) == every
        assert ids(limit, group="east-side") == [d for d in every if d.startswith("e")]
        assert ids(limit, status=DISABLED) == ["e-off1", "e-off2", "w-off"]
        assert ids(limit, group="west-side", status=ACTIVE) == ["w0", "w1", "w2", "w3"]
    assert ids(2, group="nowhere") == []
    device = services.devices.list(group="west-side", limit=1).items[0]
    assert device.group == "west-side" and device.pending_deliveries == 1 and device.token is None
    assert device == services.devices.show(device.device_id)


def test_a_device_cursor_belongs_to_its_filters(services: Services) -> None:
    services.groups.create("east-side", scope_map=PULL, actor=ME)
    add_devices(services, "east-side", ["a", "b", "c"])
    cursor = services.devices.list(group="east-side", limit=1).next_cursor
    assert [d.device_id for d in services.devices.list(group="east-side", cursor=cursor).items] == [
        "b",
        "c",
    ]
    for filters in ({}, {"status": ACTIVE}, {"group": "west-side"}):
        with pytest.raises(ValidationError) as caught:
            services.devices.list(cursor=cursor, **filters)
        assert caught.value.code == "InvalidCursor"


def test_unknown_device_status_is_refused(services: Services) -> None:
    with pytest.raises(ValidationError) as caught:
        services.devices.list(status="asleep")
    assert caught.value.code == "InvalidStatus"


# -- a constant number of queries per page ---------------------------------------------------
def _queries(services: Services, list_page: Callable[..., Page[Any]], limit: int) -> int:
    first = list_page(limit=limit)
    assert len(first.items) == limit and first.next_cursor
    with counted(services) as statements:
        page = list_page(limit=limit, cursor=first.next_cursor)
    assert len(page.items) == limit
    return len(statements)


def test_queries_per_page_do_not_grow_with_the_page_size(services: Services) -> None:
    make_tokens(services, [f"tok-{i:02d}" for i in range(41)])
    for i in range(41):
        services.scope_maps.create(f"map-{i:02d}", [], actor=ME)
    for i in range(41):
        services.groups.create(f"grp-{i:02d}", scope_map=PULL, actor=ME)
        services.groups.create_secret(f"grp-{i:02d}", actor=ME)
        services.groups.create_secret("grp-00", one_time=True, actor=ME)
    add_devices(services, "grp-00", [f"dev{i:02d}" for i in range(41)])
    lists: dict[str, tuple[Callable[..., Page[Any]], int]] = {
        "tokens": (services.tokens.list, 2),
        "scope maps": (services.scope_maps.list, 2),
        "a map's tokens": (lambda **kw: services.scope_maps.tokens_using(PULL, **kw), 2),
        "groups": (services.groups.list, 3),
        "devices": (services.devices.list, 2),
        "a group's devices": (lambda **kw: services.devices.list(group="grp-00", **kw), 3),
        "a group's secrets": (lambda **kw: services.groups.secrets("grp-00", **kw), 2),
    }
    for what, (list_page, expected) in lists.items():
        small, large = _queries(services, list_page, 2), _queries(services, list_page, 20)
        assert small == large == expected, what


def walk_back(list_page: Callable[..., Page[Any]], last: Page[Any], limit: int) -> list[list[Any]]:
    """Every page before ``last``, following its ``prev_cursor`` back to the first page."""
    pages: list[list[Any]] = []
    before = last.prev_cursor
    for _ in range(10_000):
        if before is None:
            return pages[::-1]
        page = list_page(limit=limit, before=before)
        pages.append(list(page.items))
        before = page.prev_cursor
    raise AssertionError("the walk back never ended")


@pytest.mark.parametrize("limit", [1, 4, 27, 28, 29])
def test_walking_back_sees_the_same_pages(services: Services, limit: int) -> None:
    make_tokens(services, TOKEN_NAMES)
    forward = walk(services.tokens.list, limit)
    first = services.tokens.list(limit=limit)
    assert first.prev_cursor is None
    last = first
    while last.next_cursor is not None:
        last = services.tokens.list(limit=limit, cursor=last.next_cursor)
    back = walk_back(services.tokens.list, last, limit)
    assert back == forward[:-1]  # the same rows in the same pages, last page aside
    # A page reached backwards leads forward to the page it came from.
    if len(forward) > 1:
        previous = services.tokens.list(limit=limit, before=last.prev_cursor)
        again = services.tokens.list(limit=limit, cursor=previous.next_cursor)
        assert list(again.items) == forward[-1]


def test_scope_maps_walk_back_across_the_type_boundary(services: Services) -> None:
    for name in ("A-map", "b-map", "Z-map-2", "zzzzz"):
        services.scope_maps.create(name, [], actor=ME)
    for limit in (1, 2, 3, 4):
        forward = walk(services.scope_maps.list, limit)
        last = services.scope_maps.list(limit=limit)
        while last.next_cursor is not None:
            last = services.scope_maps.list(limit=limit, cursor=last.next_cursor)
        assert walk_back(services.scope_maps.list, last, limit) == forward[:-1]


def test_before_and_cursor_together_or_a_foreign_before_are_refused(services: Services) -> None:
    make_tokens(services, ["tok-a", "tok-b", "tok-c"])
    page = services.tokens.list(limit=1)
    with pytest.raises(ValidationError, match="give cursor or before, not both"):
        services.tokens.list(limit=1, cursor=page.next_cursor, before=page.next_cursor)
    with pytest.raises(ValidationError, match="the cursor is not valid for this list"):
        services.scope_maps.list(limit=1, before=page.next_cursor)
    assert services.tokens.list(
        limit=2, before=services.tokens.cursors.encode("tokens", ("tok-a",))
    ) == Page((), None, None)
