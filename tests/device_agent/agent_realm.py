"""The registry's token endpoint (its ``realm``), played by the test with the server's own
``KeyRing`` and ``mint``: HTTP Basic against a set of passwords per user that the test changes
to simulate a rotation, ``scope`` values parsed, and pull granted on the repositories a user
may read (push too for the admin that seeds images)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from fleet.domain.actions import Action
from fleet.registry_auth.grants import access_claim
from fleet.registry_auth.keyring import KeyRing
from fleet.registry_auth.scopes import parse_scopes
from fleet.registry_auth.tokens import mint
from tests.device_agent.agent_http import HttpServer, Reply, Request

SERVICE = "fleet-registry"
ISSUER = "fleet"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-agent-tests"
READ = frozenset({Action.CONTENT_READ, Action.METADATA_READ})
WRITE = frozenset({*READ, Action.CONTENT_WRITE, Action.METADATA_WRITE})


class Realm:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._lock = threading.Lock()
        self._passwords: dict[str, set[str]] = {ADMIN: {ADMIN_PASSWORD}}
        self._readable: dict[str, frozenset[str]] = {}
        self.logins: list[tuple[str, str, bool]] = []  # (user, password, accepted)
        self.server = HttpServer(self._answer)

    @property
    def url(self) -> str:
        return f"{self.server.url}/oauth2/token"

    def accept(self, user: str, passwords: Iterable[str], readable: Iterable[str] = ()) -> None:
        """From now on ``user`` logs in with exactly these passwords."""
        with self._lock:
            self._passwords[user] = set(passwords)
            if readable:
                self._readable[user] = frozenset(readable)

    def logins_of(self, user: str) -> list[tuple[str, bool]]:
        with self._lock:
            return [(password, ok) for name, password, ok in self.logins if name == user]

    def _answer(self, request: Request) -> Reply:
        if request.path != "/oauth2/token" or request.query.get("service") != [SERVICE]:
            return Reply.json(400, {"errors": [{"code": "INVALID_REQUEST"}]})
        login = request.basic_auth()
        with self._lock:
            ok = login is not None and login[1] in self._passwords.get(login[0], set())
            if login is not None:
                self.logins.append((login[0], login[1], ok))
            readable = self._readable.get(login[0], frozenset()) if login else frozenset()
        if login is None or not ok:
            return Reply.json(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        user = login[0]

        def policy(repository: str) -> frozenset[Action]:
            if user == ADMIN:
                return WRITE
            return READ if repository in readable else frozenset()

        access = access_claim(parse_scopes(request.query.get("scope", [])), policy)
        token = mint(ISSUER, SERVICE, user, access, self.ring.signing_key())
        body = {"token": token.token, "access_token": token.token, "expires_in": token.expires_in}
        return Reply.json(200, body)

    def __enter__(self) -> Realm:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(None, None, None)
