"""Operator accounts: argon2id hashes, validation, sign-in limits, and sessions that end."""

from __future__ import annotations

import json

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from fleet.credentials import OPERATOR_PASSWORD_PREFIX
from fleet.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    TooManyRequestsError,
    ValidationError,
)
from fleet.services import Services
from fleet.services.operators import (
    FAILED_SIGN_IN,
    SIGN_IN_FAILURE_BURST,
    OperatorService,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def operators(services: Services) -> OperatorService:
    """The real service with a cheap argon2id cost, so the tests stay quick."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    services.operators = OperatorService(services.ctx, cheap)
    return services.operators


def _audit(services: Services, action: str) -> list[tuple[str, str, dict[str, str]]]:
    with services.ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor, target, detail FROM audit_events WHERE action = :a ORDER BY id"),
            {"a": action},
        ).all()
    return [(actor, target, json.loads(detail)) for actor, target, detail in rows]


def test_a_generated_password_is_returned_once_and_stored_as_argon2id(
    operators: OperatorService, services: Services
) -> None:
    view, generated = operators.create("alice", "admin", actor="test")
    assert generated is not None and generated.startswith(OPERATOR_PASSWORD_PREFIX)
    assert (view.name, view.role, view.is_admin) == ("alice", "admin", True)
    with services.ctx.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM operators")).scalar_one()
    assert stored.startswith("$argon2id$") and generated not in stored
    assert operators.authenticate("alice", generated, address="192.0.2.1").name == "alice"
    assert _audit(services, "operator.create") == [("test", "alice", {"role": "admin"})]


def test_a_chosen_password_is_not_returned(operators: OperatorService) -> None:
    view, generated = operators.create("bob", "viewer", PASSWORD, actor="test")
    assert generated is None and not view.is_admin
    assert operators.authenticate("bob", PASSWORD, address="192.0.2.1").role == "viewer"


@pytest.mark.parametrize(
    ("name", "role", "password", "code"),
    [
        ("", "admin", PASSWORD, "InvalidOperatorName"),
        ("-alice", "admin", PASSWORD, "InvalidOperatorName"),
        ("a" * 65, "admin", PASSWORD, "InvalidOperatorName"),
        ("al ice", "admin", PASSWORD, "InvalidOperatorName"),
        ("alice", "root", PASSWORD, "InvalidRole"),
        ("alice", "admin", "short", "InvalidPassword"),
        ("alice", "admin", "x" * 1025, "InvalidPassword"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(
    operators: OperatorService, name: str, role: str, password: str, code: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        operators.create(name, role, password, actor="test")
    assert caught.value.code == code
    assert operators.list() == []


def test_a_name_is_taken_once(operators: OperatorService) -> None:
    operators.create("alice", "admin", PASSWORD, actor="test")
    with pytest.raises(ConflictError) as caught:
        operators.create("alice", "viewer", PASSWORD, actor="test")
    assert caught.value.code == "OperatorExists"
    assert [(o.name, o.role) for o in operators.list()] == [("alice", "admin")]


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer_and_are_audited(
    operators: OperatorService, services: Services
) -> None:
    operators.create("alice", "admin", PASSWORD, actor="test")
    answers = []
    for name in ("alice", "nobody"):
        with pytest.raises(AuthenticationError) as caught:
            operators.authenticate(name, "not the password", address="192.0.2.7")
        answers.append((caught.value.code, caught.value.message))
    assert answers == [("SignInFailed", FAILED_SIGN_IN)] * 2
    assert _audit(services, "operator.sign-in-failed") == [
        ("operator:alice", "alice", {"address": "192.0.2.7"}),
        ("operator:nobody", "nobody", {"address": "192.0.2.7"}),
    ]


def test_failed_sign_ins_are_limited_per_name_even_with_the_right_password(
    operators: OperatorService,
) -> None:
    operators.create("alice", "admin", PASSWORD, actor="test")
    for attempt in range(SIGN_IN_FAILURE_BURST):
        with pytest.raises(AuthenticationError):
            operators.authenticate("alice", "wrong", address=f"198.51.100.{attempt}")
    with pytest.raises(TooManyRequestsError) as caught:
        operators.authenticate("alice", PASSWORD, address="203.0.113.1")
    assert caught.value.code == "TooManyRequests" and caught.value.retry_after >= 1
    # Another name from another address is not held back by alice's failures.
    operators.create("bob", "viewer", PASSWORD, actor="test")
    assert operators.authenticate("bob", PASSWORD, address="203.0.113.2").name == "bob"


def test_failed_sign_ins_are_limited_per_address_across_names(operators: OperatorService) -> None:
    operators.create("carol", "admin", PASSWORD, actor="test")
    for attempt in range(SIGN_IN_FAILURE_BURST):
        with pytest.raises(AuthenticationError):
            operators.authenticate(f"guess{attempt}", "wrong", address="198.51.100.9")
    with pytest.raises(TooManyRequestsError):
        operators.authenticate("carol", PASSWORD, address="198.51.100.9")
    assert operators.authenticate("carol", PASSWORD, address="198.51.100.10").name == "carol"


def test_a_sign_in_is_recorded_with_its_time_and_address(
    operators: OperatorService, services: Services
) -> None:
    operators.create("alice", "admin", PASSWORD, actor="test")
    operators.authenticate("alice", PASSWORD, address="192.0.2.44")
    assert operators.get("alice").last_sign_in_at == services.ctx.clock()
    assert _audit(services, "operator.sign-in") == [
        ("operator:alice", "alice", {"address": "192.0.2.44"})
    ]


def test_a_password_reset_ends_every_session_and_the_old_password(
    operators: OperatorService,
) -> None:
    view, _ = operators.create("alice", "admin", PASSWORD, actor="test")
    assert operators.signed_in(view.id, view.session_epoch) == view
    new = operators.reset_password("alice", actor="test")
    assert new is not None and new.startswith(OPERATOR_PASSWORD_PREFIX)
    assert operators.signed_in(view.id, view.session_epoch) is None
    with pytest.raises(AuthenticationError):
        operators.authenticate("alice", PASSWORD, address="192.0.2.1")
    fresh = operators.authenticate("alice", new, address="192.0.2.1")
    assert operators.signed_in(fresh.id, fresh.session_epoch) is not None


def test_a_deleted_operator_has_no_session_and_cannot_sign_in(
    operators: OperatorService,
) -> None:
    view, _ = operators.create("alice", "admin", PASSWORD, actor="test")
    operators.delete("alice", actor="test")
    assert operators.signed_in(view.id, view.session_epoch) is None
    with pytest.raises(AuthenticationError):
        operators.authenticate("alice", PASSWORD, address="192.0.2.1")
    with pytest.raises(NotFoundError) as caught:
        operators.delete("alice", actor="test")
    assert caught.value.code == "OperatorNotFound"
