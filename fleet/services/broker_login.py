"""The fleet server's own broker login, shared by every broker kind (``broker.py``,
``http_broker.py``) and by the answers of ``mqtt_auth.py``."""

from __future__ import annotations

from collections.abc import Callable

from fleet.credentials import SecretHasher

SERVER_USERNAME = "fleet-server"
STATUS_SHARE_GROUP = "fleet-server"
StatusHandler = Callable[[str, bytes], None]


def server_password(hasher: SecretHasher) -> str:
    """The server's own broker password, derived so every server of a cluster agrees on it."""
    return hasher.hash("fleet mqtt server login v1")
