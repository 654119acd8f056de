import pytest
from sqlmodel import select

from fleet.db.models import AuditEvent
from fleet.domain.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ReadOnlyError,
    ValidationError,
)
from fleet.domain.rules import RepositoryActions
from fleet.domain.system_maps import SYSTEM_SCOPE_MAP_NAMES
from fleet.services import Services

ME = "test"


def rules(*pairs: tuple[str, ...]) -> list[RepositoryActions]:
    return [RepositoryActions(p[0], tuple(p[1:])) for p in pairs]


def test_system_maps_are_present_and_read_only(services: Services) -> None:
    names = [m.name for m in services.scope_maps.list(limit=1000).items]
    assert set(SYSTEM_SCOPE_MAP_NAMES) <= set(names)
    assert names[: len(SYSTEM_SCOPE_MAP_NAMES)] == sorted(SYSTEM_SCOPE_MAP_NAMES)
    admin = services.scope_maps.show("_repositories_admin")
    assert admin.type == "SystemDefined"
    assert len(admin.entries) == 5
    with pytest.raises(ReadOnlyError):
        services.scope_maps.update(
            "_repositories_pull", add=rules(("x", "content/write")), actor=ME
        )
    with pytest.raises(ReadOnlyError):
        services.scope_maps.delete("_repositories_push", actor=ME)
    services.scope_maps.ensure_system_maps()  # idempotent
    assert [m.name for m in services.scope_maps.list(limit=1000).items] == names


def test_create_show_update(services: Services) -> None:
    created = services.scope_maps.create(
        "MyScopeMap",
        rules(("samples/hello-world", "content/write", "content/read")),
        "Sample scope map",
        actor=ME,
    )
    assert created.type == "UserDefined"
    assert created.entries == (
        ("samples/hello-world", "content/read"),
        ("samples/hello-world", "content/write"),
    )
    updated = services.scope_maps.update(
        "MyScopeMap",
        add=rules(("samples/nginx", "content/write", "content/read")),
        remove=rules(("samples/hello-world", "content/write")),
        actor=ME,
    )
    assert updated.entries == (
        ("samples/hello-world", "content/read"),
        ("samples/nginx", "content/read"),
        ("samples/nginx", "content/write"),
    )
    assert updated.description == "Sample scope map"
    again = services.scope_maps.update("MyScopeMap", description="new", actor=ME)
    assert again.description == "new" and again.entries == updated.entries


@pytest.mark.parametrize(
    ("name", "given", "code"),
    [
        ("Bad-Map1", rules(("sample/*/teamA", "content/read")), "InvalidRule"),
        ("Bad-Map1", rules(("sample/teamA*", "content/read")), "InvalidRule"),
        ("Bad-Map1", rules(("sample/teama/*/projectb/*", "content/read")), "InvalidRule"),
        ("Bad-Map1", rules(("samples/x", "content/admin")), "InvalidRule"),
        ("Bad-Map1", rules(("samples/x",)), "InvalidRule"),
        ("bad", rules(("samples/x", "content/read")), "InvalidName"),
        ("_mine", rules(("samples/x", "content/read")), "ReservedName"),
    ],
)
def test_invalid_input_changes_nothing(
    services: Services, name: str, given: list, code: str
) -> None:
    before = [m.name for m in services.scope_maps.list(limit=1000).items]
    with pytest.raises(ValidationError) as info:
        services.scope_maps.create(name, rules(("ok/one", "content/read")) + given, actor=ME)
    assert info.value.code == code
    assert [m.name for m in services.scope_maps.list(limit=1000).items] == before


def test_bad_update_changes_nothing(services: Services) -> None:
    services.scope_maps.create("MyScopeMap", rules(("a/b", "content/read")), actor=ME)
    with pytest.raises(ValidationError):
        services.scope_maps.update(
            "MyScopeMap",
            add=rules(("c/d", "content/read")),
            remove=rules(("a/b", "content/write")),
            actor=ME,
        )
    with pytest.raises(ValidationError):
        services.scope_maps.update(
            "MyScopeMap", add=rules(("c/d", "content/read"), ("x/*/y", "content/read")), actor=ME
        )
    assert services.scope_maps.show("MyScopeMap").entries == (("a/b", "content/read"),)


def test_duplicate_and_missing(services: Services) -> None:
    services.scope_maps.create("MyScopeMap", rules(("a/b", "content/read")), actor=ME)
    with pytest.raises(ConflictError):
        services.scope_maps.create("MyScopeMap", rules(("a/b", "content/read")), actor=ME)
    with pytest.raises(NotFoundError):
        services.scope_maps.show("NoSuchMap")


def test_entry_limit(make_services) -> None:  # type: ignore[no-untyped-def]
    services = make_services(max_scope_map_entries=3)
    services.scope_maps.create("Limited", rules(("a/b", "content/read", "content/write")), actor=ME)
    with pytest.raises(LimitExceededError) as info:
        services.scope_maps.update(
            "Limited", add=rules(("c/d", "content/read", "metadata/read")), actor=ME
        )
    assert "limit is 3" in info.value.message
    with pytest.raises(LimitExceededError):
        services.scope_maps.create(
            "TooBig",
            rules(("x", "content/read", "content/write", "content/delete", "metadata/read")),
            actor=ME,
        )
    services.scope_maps.update("Limited", add=rules(("c/d", "content/read")), actor=ME)


def test_scope_map_count_limit(make_services) -> None:  # type: ignore[no-untyped-def]
    services = make_services(max_scope_maps=2)
    for name in ["first", "second"]:
        services.scope_maps.create(name + "-map", rules(("a", "content/read")), actor=ME)
    with pytest.raises(LimitExceededError):
        services.scope_maps.create("third-map", rules(("a", "content/read")), actor=ME)


def test_delete_map_in_use_leaves_tokens_without_permissions(services: Services) -> None:
    services.scope_maps.create("Shared-map", rules(("a/b", "content/read")), actor=ME)
    services.tokens.create("TokenOne", scope_map="Shared-map", actor=ME)
    assert services.scope_maps.tokens_using("Shared-map").items == ("TokenOne",)
    assert services.scope_maps.delete("Shared-map", actor=ME) == ["TokenOne"]
    assert services.tokens.show("TokenOne").scope_map is None


def test_a_map_a_device_group_uses_is_not_deleted(services: Services) -> None:
    """Deleting it cut every device of the group off at once (their tokens were left without
    permissions, and the group enrolled devices with none). It is a 409 naming the group (the
    CLI adds the command that moves it), and nothing changes; once the group moves, the map can
    go."""
    services.scope_maps.create("devices-read", rules(("edge/*", "content/read")), actor=ME)
    services.scope_maps.create("devices-next", rules(("edge/*", "content/read")), actor=ME)
    services.groups.create("pilots", scope_map="devices-read", actor=ME)
    with pytest.raises(ConflictError) as refused:
        services.scope_maps.delete("devices-read", actor=ME)
    assert refused.value.code == "ScopeMapInUse"
    assert "'pilots'" in refused.value.message
    assert "give the group another scope map first" in refused.value.message
    assert services.scope_maps.show("devices-read").entries
    assert services.groups.show("pilots").scope_map == "devices-read"
    services.groups.update("pilots", scope_map="devices-next", actor=ME)
    assert services.scope_maps.delete("devices-read", actor=ME) == []


def test_audit_records_without_secrets(services: Services) -> None:
    token = services.tokens.create("Audited", repositories=rules(("a", "content/read")), actor=ME)
    values = [p.value for p in token.passwords]
    with services.ctx.db.session() as s:
        events = s.exec(select(AuditEvent)).all()
    assert {e.action for e in events} >= {"scope-map.create", "token.create"}
    dump = " ".join(e.detail + e.target for e in events)
    assert all(v and v not in dump for v in values)


def test_a_map_at_the_entry_limit_is_audited_on_every_database(services: Services) -> None:
    rules500 = [RepositoryActions(f"team{i}/app", ("content/read",)) for i in range(500)]
    made = services.scope_maps.create("big-map", rules500, actor=ME)
    assert len(made.entries) == 500
    with services.ctx.db.session() as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.target == "big-map")).one()
    assert "450 more" in event.detail and len(event.detail) <= 4096


def test_names_are_the_lists_first_names_in_one_query(services: Services) -> None:
    from tests.support.statements import counted

    for name in ("b-map-1", "A-map-1", "c-map-1"):
        services.scope_maps.create(name, [], actor=ME)
    listed = [m.name for m in services.scope_maps.list(limit=7).items]
    with counted(services) as statements:
        names = services.scope_maps.names(limit=7)
    assert names == listed and len(names) == 7 and len(statements) == 1
