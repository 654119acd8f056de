"""A synchronous admin client for mosquitto's dynamic security, over one MQTT connection.

Commands are published as ``{"commands": [...]}`` to ``$CONTROL/dynamic-security/v1``; the
plugin answers with ``{"responses": [...]}`` on ``$CONTROL/dynamic-security/v1/response``, one
response per command, each carrying the command's ``correlationData``. Every admin connected
to the broker receives every response (the plugin publishes them to the topic at QoS 0), so each
command gets a random correlation id and answers to other admins' commands are ignored.

One ``DynsecAdmin`` holds one paho connection and may be shared by threads: each call waits
only for its own responses. Use it as a context manager, or call ``start()`` and ``close()``
(``ConnectionOwner``).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from fleet.mqtt import dynsec_commands as cmd
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.connection import Connection, ConnectionOwner, check_rc, unique_client_id
from fleet.mqtt.errors import (
    BrokerError,
    BrokerTimeoutError,
    BrokerUnavailableError,
    DynsecCommandError,
    DynsecConflictError,
    DynsecNotFoundError,
)

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
COMMAND_TIMEOUT_S = 5.0
CLIENT_ID_PREFIX = "fleet-dynsec"
# The plugin's own words (mosquitto 2.0 plugins/dynamic-security/*.c).
NOT_FOUND_ERRORS = frozenset(
    {"Client not found", "Role not found", "Group not found", "ACL not found"}
)
CONFLICT_ERRORS = frozenset(
    {
        "Client already exists",
        "Role already exists",
        "Group already exists",
        "ACL with this topic already exists",
    }
)


def error_for(command: Mapping[str, Any], response: Mapping[str, Any]) -> DynsecCommandError | None:
    """The error a response carries, typed by what it means; None when the command succeeded."""
    error = response.get("error")
    if error is None:
        return None
    name, target, text = str(command["command"]), cmd.target_of(dict(command)), str(error)
    if text in NOT_FOUND_ERRORS:
        return DynsecNotFoundError(name, target, text)
    if text in CONFLICT_ERRORS:
        return DynsecConflictError(name, target, text)
    return DynsecCommandError(name, target, text)


class _Batch:
    """The responses one call is waiting for, filled in by the network thread."""

    def __init__(self, correlation_ids: Sequence[str]) -> None:
        self.correlation_ids = list(correlation_ids)
        self.responses: dict[str, dict[str, Any]] = {}
        self.failure: BrokerError | None = None
        self.done = threading.Event()

    def deliver(self, correlation_id: str, response: dict[str, Any]) -> None:
        self.responses[correlation_id] = response
        if len(self.responses) == len(self.correlation_ids):
            self.done.set()

    def fail(self, failure: BrokerError) -> None:
        self.failure = failure
        self.done.set()


class DynsecAdmin(ConnectionOwner):
    def __init__(
        self,
        address: BrokerAddress,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        timeout_s: float = COMMAND_TIMEOUT_S,
        **connection_options: Any,
    ) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[str, _Batch] = {}
        self._connection = Connection(
            address,
            username,
            password,
            client_id=client_id or unique_client_id(CLIENT_ID_PREFIX),
            on_connected=self._subscribe,
            on_disconnected=self._fail_pending,
            **connection_options,
        )
        self._connection.client.on_message = self._handle_message

    # -- connection -------------------------------------------------------------------------

    def close(self) -> None:
        super().close()
        self._fail_pending()

    def _subscribe(self, _client: mqtt.Client) -> None:
        # Made again after every reconnect. The broker handles one client's packets in order, so
        # a command published after this SUBSCRIBE always finds the subscription in place.
        self._connection.subscribe(RESPONSE_TOPIC, qos=0)

    def _fail_pending(self) -> None:
        with self._lock:
            batches = list(set(self._pending.values()))
            self._pending.clear()
        for batch in batches:
            batch.fail(
                BrokerUnavailableError(
                    "connection to the broker lost while waiting for a dynamic-security answer; "
                    "the command may or may not have been applied"
                )
            )

    def _handle_message(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed dynamic-security response")
            return
        if not isinstance(responses, list):
            return
        for response in responses:
            if not isinstance(response, dict):
                continue
            correlation_id = response.get("correlationData")
            with self._lock:
                batch = self._pending.pop(str(correlation_id), None)
            if batch is not None:
                batch.deliver(str(correlation_id), response)

    # -- sending ----------------------------------------------------------------------------

    def execute(
        self, commands: Sequence[Mapping[str, Any]], *, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Send commands in one message; return their responses in the same order.

        Errors inside responses are returned, not raised (see ``error_for``); a missing answer
        raises ``BrokerTimeoutError`` and a lost connection ``BrokerUnavailableError``.
        """
        if not commands:
            return []
        names = ", ".join(str(c["command"]) for c in commands)
        self._connection.require_connected(f"send {names}")
        correlation_ids = [uuid.uuid4().hex for _ in commands]
        batch = _Batch(correlation_ids)
        payload = json.dumps(
            {
                "commands": [
                    {**command, "correlationData": correlation_id}
                    for command, correlation_id in zip(commands, correlation_ids, strict=True)
                ]
            }
        )
        with self._lock:
            for correlation_id in correlation_ids:
                self._pending[correlation_id] = batch
        try:
            info = self._connection.client.publish(CONTROL_TOPIC, payload, qos=0)
            check_rc(info.rc, f"send {names}")
            wait_s = self.timeout_s if timeout_s is None else timeout_s
            if not batch.done.wait(wait_s):
                raise BrokerTimeoutError(
                    f"no answer from the broker to {names} within {wait_s} s; "
                    "the command may or may not have been applied"
                )
        finally:
            with self._lock:
                for correlation_id in correlation_ids:
                    self._pending.pop(correlation_id, None)
        if batch.failure is not None:
            raise batch.failure
        return [batch.responses[correlation_id] for correlation_id in correlation_ids]

    def run(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Send one command; raise its error if it failed, else return its response."""
        (response,) = self.execute([command])
        error = error_for(command, response)
        if error is not None:
            raise error
        return response

    def _data(self, command: Mapping[str, Any], key: str) -> Any:
        data = self.run(command).get("data")
        if not isinstance(data, dict) or key not in data:
            raise DynsecCommandError(
                str(command["command"]), cmd.target_of(dict(command)), "no data"
            )
        return data[key]

    # -- clients ----------------------------------------------------------------------------

    def create_client(
        self,
        username: str,
        password: str,
        *,
        roles: Sequence[tuple[str, int]] = (),
        textname: str | None = None,
        clientid: str | None = None,
    ) -> None:
        self.run(
            cmd.create_client(username, password, roles=roles, textname=textname, clientid=clientid)
        )

    def delete_client(self, username: str) -> None:
        self.run(cmd.delete_client(username))

    def enable_client(self, username: str) -> None:
        self.run(cmd.enable_client(username))

    def disable_client(self, username: str) -> None:
        """Refuse new logins and kick every connection using this username."""
        self.run(cmd.disable_client(username))

    def set_client_password(self, username: str, password: str) -> None:
        """Change the password; mosquitto also kicks the client's open connections."""
        self.run(cmd.set_client_password(username, password))

    def set_client_id(self, username: str, clientid: str | None) -> None:
        """Accept this login only with this client id (``None``: any); kicks its connections."""
        self.run(cmd.set_client_id(username, clientid))

    def get_client(self, username: str) -> dict[str, Any]:
        client = self._data(cmd.get_client(username), "client")
        return dict(client)

    def list_clients(self, *, count: int = -1, offset: int = 0) -> list[str]:
        return [
            str(name)
            for name in self._data(cmd.list_clients(count=count, offset=offset), "clients")
        ]

    def list_client_details(self, *, count: int = -1, offset: int = 0) -> list[dict[str, Any]]:
        """Every client's details as ``getClient`` gives them (username, clientid, roles...)."""
        clients = self._data(cmd.list_clients(count=count, offset=offset, verbose=True), "clients")
        return [dict(client) for client in clients if isinstance(client, dict)]

    def add_client_role(self, username: str, rolename: str, priority: int | None = None) -> None:
        self.run(cmd.add_client_role(username, rolename, priority))

    def remove_client_role(self, username: str, rolename: str) -> None:
        self.run(cmd.remove_client_role(username, rolename))

    # -- roles ------------------------------------------------------------------------------

    def create_role(
        self, rolename: str, acls: Sequence[Acl] = (), *, textname: str | None = None
    ) -> None:
        self.run(cmd.create_role(rolename, acls, textname=textname))

    def delete_role(self, rolename: str) -> None:
        self.run(cmd.delete_role(rolename))

    def get_role(self, rolename: str) -> dict[str, Any]:
        return dict(self._data(cmd.get_role(rolename), "role"))

    def role_acls(self, rolename: str) -> frozenset[Acl]:
        return frozenset(Acl.from_json(acl) for acl in self.get_role(rolename).get("acls", []))

    def add_role_acl(self, rolename: str, acl: Acl) -> None:
        """Add one ACL; mosquitto kicks the clients holding the role so it applies at once."""
        self.run(cmd.add_role_acl(rolename, acl))

    def remove_role_acl(self, rolename: str, acltype: AclType, topic: str) -> None:
        self.run(cmd.remove_role_acl(rolename, acltype, topic))
