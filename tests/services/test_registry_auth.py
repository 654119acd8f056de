from datetime import timedelta

import pytest

from fleet.domain.actions import Action
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.credential_cache import credentials_for
from fleet.services.registry_auth import RegistryAuthService

ME = "test"
R, W, D = Action.CONTENT_READ, Action.CONTENT_WRITE, Action.CONTENT_DELETE


@pytest.fixture(params=["on", "off"], ids=["cache-on", "cache-off"])
def auth(request: pytest.FixtureRequest, services: Services) -> RegistryAuthService:
    """The service on either credential source: its answers must not depend on the cache."""
    return RegistryAuthService(services.ctx, credentials_for(services.ctx.db.engine, request.param))


def _create(services: Services, name: str = "MyToken", **kw):  # type: ignore[no-untyped-def]
    rules = [RepositoryActions("samples/hello-world", ("content/write", "content/read"))]
    token = services.tokens.create(name, repositories=rules, actor=ME, **kw)
    return [p.value for p in token.passwords]


def test_either_password_authenticates(services: Services, auth: RegistryAuthService) -> None:
    p1, p2 = _create(services)
    for value, slot in ((p1, "password1"), (p2, "password2")):
        principal = auth.authenticate("MyToken", value)
        assert principal is not None and principal.slot == slot
        assert principal.allowed("samples/hello-world") == {R, W}
        assert principal.allowed("samples/nginx") == set()


def test_refusals(services: Services, auth: RegistryAuthService, clock) -> None:  # type: ignore[no-untyped-def]
    p1, p2 = _create(services, expiry=None)
    assert auth.authenticate("MyToken", "wrong") is None
    assert auth.authenticate("Nobody1", p1) is None
    assert auth.authenticate("MyToken", p1 + "x") is None
    services.tokens.update("MyToken", status="disabled", actor=ME)
    assert auth.authenticate("MyToken", p1) is None
    services.tokens.update("MyToken", status="enabled", actor=ME)
    assert auth.authenticate("MyToken", p1) is not None
    # regenerate: the new value works at once, the replaced one stops
    _, fresh = services.tokens.generate_credentials(
        "MyToken", ["password1"], actor=ME, expiry=clock() + timedelta(days=1)
    )
    assert auth.authenticate("MyToken", p1) is None
    assert auth.authenticate("MyToken", fresh[0].value) is not None
    assert auth.authenticate("MyToken", p2) is not None
    clock.advance(days=1)  # password1 has expired, password2 never expires
    assert auth.authenticate("MyToken", fresh[0].value) is None
    assert auth.authenticate("MyToken", p2) is not None
    services.tokens.delete("MyToken", actor=ME)
    assert auth.authenticate("MyToken", p2) is None


def test_scope_map_changes_apply_to_the_next_request(
    services: Services, auth: RegistryAuthService
) -> None:
    p1, _ = _create(services)
    assert auth.authenticate("MyToken", p1).allowed("samples/nginx") == set()  # type: ignore[union-attr]
    services.scope_maps.update(
        "MyToken-scope-map",
        add=[RepositoryActions("samples/nginx", ("content/read", "content/write"))],
        remove=[RepositoryActions("samples/hello-world", ("content/write",))],
        actor=ME,
    )
    principal = auth.authenticate("MyToken", p1)
    assert principal is not None
    assert principal.allowed("samples/nginx") == {R, W}
    assert principal.allowed("samples/hello-world") == {R}
    services.tokens.update("MyToken", scope_map="_repositories_admin", actor=ME)
    assert auth.authenticate("MyToken", p1).allowed("any/thing") == set(Action)  # type: ignore[union-attr]
    services.scope_maps.create("Other-map", [RepositoryActions("x", ("content/read",))], actor=ME)
    services.tokens.update("MyToken", scope_map="Other-map", actor=ME)
    services.scope_maps.delete("Other-map", actor=ME)
    principal = auth.authenticate("MyToken", p1)
    assert principal is not None and principal.allowed("x") == set()


def test_reference_wildcard_grants(services: Services, auth: RegistryAuthService) -> None:
    rules = [
        RepositoryActions("sample/*", ("content/read",)),
        RepositoryActions("sample/teama/*", ("content/write",)),
        RepositoryActions("sample/teama/projectb", ("content/delete",)),
    ]
    token = services.tokens.create("Wildcard", repositories=rules, actor=ME)
    principal = auth.authenticate("Wildcard", token.passwords[0].value or "")
    assert principal is not None
    assert principal.allowed("sample/teama/projectb") == {R, W, D}
    assert principal.allowed("sample/teama/projectc") == {R, W}
