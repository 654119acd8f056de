"""``fleet-agent enroll`` against an in-test enrollment API: what it sends, what it keeps (and
with which file modes), and the operator-facing errors for 400/401/409/503 and a server that
cannot be reached. Nothing changes on disk unless the server said 201."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.commands import cli
from device_agent.commands.enroll import EnrollError, EnrollSecret, enroll
from device_agent.protocol.keys import public_key_b64
from device_agent.state.enrollment import FILENAME, load_enrollment
from device_agent.state.keys import SERVER_KEY_FILE, load_device_keys
from device_agent.state.store import FILENAME as STORE_FILE
from tests.device_agent.agent_http import HttpServer, Reply, Request
from tests.support.ports import free_port

DEVICE = "rpi-0001"
SECRET = "flte_enrollment-secret-for-tests"
MQTT_PASSWORD = "fltm_mqtt-password-shown-once"
SERVER_KEY = public_key_b64(Ed25519PrivateKey.generate().public_key())


def answer(device_id: str = DEVICE, **changes: object) -> dict[str, object]:
    root = f"fleet/v1/devices/{device_id}"
    document: dict[str, object] = {
        "deviceId": device_id,
        "status": "active",
        "mqtt": {
            "url": "mqtt://127.0.0.1:1883",
            "username": device_id,
            "password": MQTT_PASSWORD,
            "topics": {
                "credentials": f"{root}/credentials",
                "commands": f"{root}/commands",
                "status": f"{root}/status",
            },
        },
        "serverSigningKey": SERVER_KEY,
        "registry": {
            "loginServer": "registry.example:5000",
            "username": f"dev-{device_id}",
            "tokenEndpoint": "https://fleet.example/oauth2/token",
            "service": "fleet-registry",
        },
    }
    document.update(changes)
    return document


class EnrollApi:
    def __init__(self) -> None:
        self.reply = Reply.json(201, answer())

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/api/v1/enroll":
            return Reply(404)
        return self.reply


@pytest.fixture
def api() -> Iterator[tuple[EnrollApi, HttpServer]]:
    fake = EnrollApi()
    with HttpServer(fake) as server:
        yield fake, server


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_enroll_sends_keys_and_keeps_the_answer(api, tmp_path: Path) -> None:
    _, server = api
    enrolled = enroll(server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    sent = server.requests[-1].json()
    keys = load_device_keys(tmp_path)
    assert sent == {
        "deviceId": DEVICE,
        "enrollmentSecret": SECRET,
        "x25519PublicKey": keys.x25519_public_b64,
        "ed25519PublicKey": keys.ed25519_public_b64,
    }
    assert len(base64.b64decode(sent["x25519PublicKey"])) == 32
    assert enrolled == load_enrollment(tmp_path)
    assert enrolled.mqtt.password == MQTT_PASSWORD
    assert enrolled.registry.token_endpoint == "https://fleet.example/oauth2/token"
    assert mode(tmp_path / FILENAME) == 0o600
    assert mode(tmp_path) == 0o700
    assert (tmp_path / SERVER_KEY_FILE).read_text().strip() == SERVER_KEY
    assert MQTT_PASSWORD not in repr(enrolled)


def test_a_one_time_code_is_sent_as_such(api, tmp_path: Path) -> None:
    _, server = api
    enroll(server.url, EnrollSecret(code="fltc_once"), device_id=DEVICE, state_dir=tmp_path)
    sent = server.requests[-1].json()
    assert sent["enrollmentCode"] == "fltc_once" and "enrollmentSecret" not in sent


@pytest.mark.parametrize(
    ("status", "words", "temporary"),
    [
        (400, "refused the request as invalid", False),
        (401, "secret or code is not valid", False),
        (409, "already enrolled: an operator must allow it", False),
        (503, "try again later", True),
        (500, "unexpected answer", True),
    ],
)
def test_refusals_are_explained_and_change_nothing(
    api, tmp_path: Path, status: int, words: str, temporary: bool
) -> None:
    fake, server = api
    fake.reply = Reply.json(status, {"error": {"code": "X", "message": "said the server"}})
    with pytest.raises(EnrollError) as caught:
        enroll(server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    assert words in caught.value.message and "said the server" in caught.value.message
    assert caught.value.temporary is temporary
    assert not (tmp_path / FILENAME).exists()
    assert SECRET not in caught.value.message


def test_an_unreachable_server_is_a_temporary_failure(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EnrollError) as caught:
        enroll(url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    assert caught.value.temporary and "cannot reach" in caught.value.message


@pytest.mark.parametrize(
    "bad",
    [
        answer(serverSigningKey="bm90IGEga2V5"),
        answer(mqtt={"url": "http://x", "username": "u", "password": "p"}),
        answer(deviceId="rpi-0002"),
        {"deviceId": DEVICE},
        ["not", "an", "object"],
    ],
)
def test_an_unusable_answer_is_refused(api, tmp_path: Path, bad: object) -> None:
    fake, server = api
    fake.reply = Reply.json(201, bad)
    with pytest.raises(EnrollError):
        enroll(server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    assert not (tmp_path / FILENAME).exists()


def test_an_existing_enrollment_needs_force(api, tmp_path: Path) -> None:
    fake, server = api
    enroll(server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    (tmp_path / STORE_FILE).write_text("old credentials")
    with pytest.raises(EnrollError, match="--force"):
        enroll(server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path)
    assert len(server.requests) == 1

    fake.reply = Reply.json(201, answer(status="pending"))
    again = enroll(
        server.url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=tmp_path, force=True
    )
    assert again.status == "pending"
    assert not (tmp_path / STORE_FILE).exists()  # a new enrollment starts with no history


@pytest.mark.parametrize("device_id", ["ab", "-rpi", "rpi_1", "x" * 47, "rpi.1", "rpi\n"])
def test_invalid_device_ids_are_refused_before_any_request(
    api, tmp_path: Path, device_id: str
) -> None:
    _, server = api
    with pytest.raises(EnrollError, match="invalid device id"):
        enroll(server.url, EnrollSecret(secret=SECRET), device_id=device_id, state_dir=tmp_path)
    assert server.requests == []


def test_cli_enroll_exit_codes_and_output(
    api, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, server = api
    base = ["enroll", "--server", server.url, "--state-dir", str(tmp_path)]
    assert cli.main([*base, "--device-id", DEVICE, "--secret", SECRET]) == 0
    out = capsys.readouterr()
    assert "enrolled as rpi-0001" in out.out
    assert MQTT_PASSWORD not in out.out + out.err and SECRET not in out.out + out.err

    assert cli.main([*base, "--device-id", DEVICE, "--secret", SECRET]) == 1
    assert "--force" in capsys.readouterr().err

    fake.reply = Reply.json(503, {"error": {"code": "BrokerUnavailable", "message": "later"}})
    assert cli.main([*base, "--force", "--device-id", DEVICE, "--secret", SECRET]) == 75

    fake.reply = Reply.json(201, answer())
    monkeypatch.setenv("FLEET_AGENT_ENROLL_CODE", "fltc_from_env")
    assert cli.main([*base, "--force", "--device-id", DEVICE]) == 0
    assert server.requests[-1].json()["enrollmentCode"] == "fltc_from_env"

    monkeypatch.delenv("FLEET_AGENT_ENROLL_CODE")
    assert cli.main([*base, "--force", "--device-id", DEVICE]) == 2


def test_cli_enroll_defaults_the_device_id(api, tmp_path: Path, monkeypatch) -> None:
    fake, server = api
    monkeypatch.setattr(
        "device_agent.commands.default_id.socket.gethostname", lambda: "RaspberryPi"
    )
    sent: list[str] = []

    def echo(request: Request) -> Reply:
        device_id = request.json()["deviceId"]
        sent.append(device_id)
        return Reply.json(201, answer(device_id))

    fake.reply = None  # type: ignore[assignment]
    server.handler = echo
    base = ["enroll", "--server", server.url, "--state-dir", str(tmp_path), "--secret", SECRET]
    assert cli.main(base) == 0
    assert sent[0].startswith("raspberrypi")
    document = json.loads((tmp_path / FILENAME).read_text())
    assert document["device_id"] == sent[0]
