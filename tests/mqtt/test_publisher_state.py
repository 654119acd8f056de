"""The line the overview shows for a broker's publishing connection, for either broker mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from fleet.mqtt.publisher import publisher_state


@dataclass
class _Seen:
    connected: bool
    last_failure: str = ""


def test_not_made_yet_connected_and_disconnected() -> None:
    where = "mqtt://broker:1883"
    assert publisher_state(None, where) == ("not connected yet", f"{where}: connects on first use")
    assert publisher_state(cast(Any, _Seen(True)), where) == ("connected", where)
    lost = cast(Any, _Seen(False, "connection refused"))
    assert publisher_state(lost, where) == ("disconnected", f"{where}: connection refused")
