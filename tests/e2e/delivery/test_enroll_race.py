"""Two devices enroll one new id at the same moment over HTTP, against the real ``fleet serve``
(its gunicorn workers are separate processes) and the real broker: one 201, one clean 409,
and the winner's broker login works (issue 12, defect 2: the loser's password replaced the
winner's, which then got "Not authorized")."""

from __future__ import annotations

import pytest

from tests.e2e.delivery.device import WireDevice
from tests.e2e.delivery.parts import Parts
from tests.services.devices.races import at_once

pytestmark = pytest.mark.e2e

ROUNDS = 6


def test_one_id_enrolled_at_once_over_http_keeps_the_winners_broker_login(parts: Parts) -> None:
    for n in range(ROUNDS):
        twins = [
            WireDevice(f"race-e2e-{n}", parts.server.url, protocol=parts.mqtt_protocol)
            for _ in range(2)
        ]
        answers = at_once(*(lambda d=d: d.enroll(parts.secret) for d in twins))
        codes = sorted(a.status_code for a in answers)
        assert codes == [201, 409], [a.text for a in answers]
        loser = answers[[a.status_code for a in answers].index(409)]
        assert loser.json()["error"]["code"] == "DeviceExists", loser.text
        winner = twins[[a.status_code for a in answers].index(201)]
        reason = winner.connect()
        assert not reason.is_failure, f"round {n}: the winner's login was refused: {reason}"
        winner.wait_for(lambda w=winner: w.credentials is not None, "credentials")
        assert winner.refused == []  # sealed to the winner's key, signed by the server
        winner.disconnect()
