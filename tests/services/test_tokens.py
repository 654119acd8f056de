from datetime import timedelta

import pytest
from sqlmodel import select

from fleet.credentials import PASSWORD_PREFIX, looks_valid
from fleet.db.models import TokenPassword
from fleet.domain.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from fleet.domain.rules import RepositoryActions
from fleet.services import Services

ME = "test"
HELLO = [RepositoryActions("samples/hello-world", ("content/write", "content/read"))]


def test_create_with_repository_creates_scope_map_and_two_passwords(services: Services) -> None:
    token = services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    assert token.status == "enabled"
    assert token.scope_map == "MyToken-scope-map"
    assert [p.name for p in token.passwords] == ["password1", "password2"]
    values = [p.value for p in token.passwords]
    assert all(v and looks_valid(v, PASSWORD_PREFIX) for v in values)
    assert values[0] != values[1]
    assert all(p.expiry is None for p in token.passwords)
    shown = services.tokens.show("MyToken")
    assert [p.value for p in shown.passwords] == [None, None]  # never returned twice
    assert services.scope_maps.show("MyToken-scope-map").entries == (
        ("samples/hello-world", "content/read"),
        ("samples/hello-world", "content/write"),
    )


def test_passwords_are_stored_only_as_keyed_hashes(services: Services) -> None:
    token = services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    with services.ctx.db.session() as s:
        stored = s.exec(select(TokenPassword)).all()
    for p in token.passwords:
        assert p.value is not None
        assert all(p.value not in row.secret_hash for row in stored)
        assert services.ctx.hasher.hash(p.value) in {row.secret_hash for row in stored}


def test_create_with_scope_map_and_options(services: Services, clock) -> None:  # type: ignore[no-untyped-def]
    services.scope_maps.create("MyScopeMap", HELLO, "Sample scope map", actor=ME)
    expiry = clock() + timedelta(days=30)
    token = services.tokens.create(
        "MyToken", scope_map="MyScopeMap", status="disabled", expiry=expiry, actor=ME
    )
    assert token.scope_map == "MyScopeMap" and token.status == "disabled"
    assert [p.expiry for p in token.passwords] == [expiry, expiry]
    bare = services.tokens.create(
        "NoPasswords", scope_map="MyScopeMap", generate_passwords=False, actor=ME
    )
    assert bare.passwords == ()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, "InvalidRequest"),  # neither scope map nor repositories
        ({"scope_map": "_repositories_pull", "repositories": HELLO}, "InvalidRequest"),
        ({"scope_map": "_repositories_pull", "status": "paused"}, "InvalidStatus"),
        ({"repositories": [RepositoryActions("samples/*/x", ("content/read",))]}, "InvalidRule"),
    ],
)
def test_invalid_create_changes_nothing(services: Services, kwargs: dict, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        services.tokens.create("MyToken", actor=ME, **kwargs)
    assert info.value.code == code
    assert services.tokens.list().items == ()
    assert "MyToken-scope-map" not in [m.name for m in services.scope_maps.list(limit=1000).items]


def test_expiry_in_the_past_is_refused(services: Services, clock) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError):
        services.tokens.create("MyToken", repositories=HELLO, expiry=clock(), actor=ME)
    assert services.tokens.list().items == ()


def test_duplicates_and_unknowns(services: Services) -> None:
    services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    with pytest.raises(ConflictError):
        services.tokens.create("MyToken", scope_map="_repositories_pull", actor=ME)
    with pytest.raises(NotFoundError):
        services.tokens.create("Other", scope_map="NoSuchMap", actor=ME)
    with pytest.raises(NotFoundError):
        services.tokens.show("Nobody")
    with pytest.raises(ConflictError):  # its scope map's name is taken
        services.scope_maps.create("Second", HELLO, actor=ME)
        services.tokens.create("Second", scope_map="Second", actor=ME)
        services.scope_maps.create("Third-scope-map", HELLO, actor=ME)
        services.tokens.create("Third", repositories=HELLO, actor=ME)
    assert [t.name for t in services.tokens.list().items] == ["MyToken", "Second"]


def test_update_scope_map_and_status(services: Services) -> None:
    services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    updated = services.tokens.update("MyToken", status="disabled", actor=ME)
    assert updated.status == "disabled"
    updated = services.tokens.update("MyToken", scope_map="_repositories_pull", actor=ME)
    assert updated.scope_map == "_repositories_pull" and updated.status == "disabled"
    with pytest.raises(ValidationError):
        services.tokens.update("MyToken", status="off", actor=ME)


def test_generate_one_slot_keeps_the_other(services: Services, clock) -> None:  # type: ignore[no-untyped-def]
    token = services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    old = {p.name: services.ctx.hasher.hash(p.value or "") for p in token.passwords}
    clock.advance(hours=1)
    expiry = clock() + timedelta(days=30)
    username, fresh = services.tokens.generate_credentials(
        "MyToken", ["password1"], expiry=expiry, actor=ME
    )
    assert username == "MyToken"
    assert [p.name for p in fresh] == ["password1"] and fresh[0].expiry == expiry
    with services.ctx.db.session() as s:
        rows = {r.slot: r for r in s.exec(select(TokenPassword)).all()}
    assert rows["password1"].secret_hash != old["password1"]
    assert rows["password1"].created_at == clock()
    assert rows["password2"].secret_hash == old["password2"]


def test_credential_delete(services: Services) -> None:
    services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    after = services.tokens.delete_credential("MyToken", "password2", actor=ME)
    assert [p.name for p in after.passwords] == ["password1"]
    with pytest.raises(NotFoundError):
        services.tokens.delete_credential("MyToken", "password2", actor=ME)
    with pytest.raises(ValidationError):
        services.tokens.delete_credential("MyToken", "password3", actor=ME)
    _, fresh = services.tokens.generate_credentials("MyToken", ["password2"], actor=ME)
    assert [p.name for p in services.tokens.show("MyToken").passwords] == ["password1", "password2"]
    assert fresh[0].value


def test_delete_token(services: Services) -> None:
    services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    services.tokens.delete("MyToken", actor=ME)
    with pytest.raises(NotFoundError):
        services.tokens.show("MyToken")
    with services.ctx.db.session() as s:
        assert s.exec(select(TokenPassword)).all() == []


def test_token_limit(make_services) -> None:  # type: ignore[no-untyped-def]
    services = make_services(max_tokens=2)
    for name in ["token-1", "token-2"]:
        services.tokens.create(name, scope_map="_repositories_pull", actor=ME)
    with pytest.raises(LimitExceededError) as info:
        services.tokens.create("token-3", scope_map="_repositories_pull", actor=ME)
    assert "limit (2)" in info.value.message


def test_create_with_a_new_map_named_and_described_by_the_operator(services: Services) -> None:
    token = services.tokens.create(
        "MyToken",
        repositories=HELLO,
        new_map_name="hello-rw",
        new_map_description="made with the token",
        generate_passwords=False,
        actor=ME,
    )
    assert token.scope_map == "hello-rw" and token.passwords == ()
    made = services.scope_maps.show("hello-rw")
    assert made.description == "made with the token" and len(made.entries) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"new_map_name": "_mine"}, "scope map name '_mine' is reserved"),
        ({"new_map_name": "abc"}, "invalid scope map name 'abc'"),
        ({"new_map_description": "x" * 1025}, "the description is longer than 1024 characters"),
        ({"new_map_name": "Taken-map"}, "scope map 'Taken-map' already exists"),
    ],
)
def test_a_bad_new_map_makes_neither_token_nor_map(
    services: Services, changes: dict[str, str], message: str
) -> None:
    services.scope_maps.create("Taken-map", HELLO, actor=ME)
    with pytest.raises((ValidationError, ConflictError), match=message):
        services.tokens.create("MyToken", repositories=HELLO, actor=ME, **changes)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        services.tokens.show("MyToken")
    assert [m.name for m in services.scope_maps.list().items if not m.name.startswith("_")] == [
        "Taken-map"
    ]


def test_device_of_names_the_owning_device_only(services: Services) -> None:
    from tests.services.devices.conftest import new_device
    from tests.support.fake_broker import FakeBroker

    services.broker = FakeBroker()
    services.scope_maps.create(
        "devices-read", [RepositoryActions("edge/*", ("content/read",))], actor=ME
    )
    services.groups.create("pilots-eu", scope_map="devices-read", actor=ME)
    secret = services.groups.create_secret("pilots-eu", actor=ME).value or ""
    services.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    services.tokens.create("MyToken", repositories=HELLO, actor=ME)
    assert services.tokens.device_of("dev-rpi-0001") == "rpi-0001"
    assert services.tokens.device_of("MyToken") is None
    with pytest.raises(NotFoundError):
        services.tokens.device_of("Nowhere-token")
