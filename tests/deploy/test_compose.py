"""The compose file's broker: TLS only on the host's interfaces (issue 12, defect 15), and the
shipped message size limit kept (defect 8).

No container engine runs here, so the mosquitto service's own command is run with the host's
``sh`` and ``sed`` on the shipped configuration (compose's ``$$`` unescaped first), and the
configuration it writes is checked line by line.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
SHIPPED = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def _service(name: str) -> dict:  # type: ignore[type-arg]
    services: dict = yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[type-arg]
    return services[name]  # type: ignore[no-any-return]


def _generated_config(tmp_path: Path) -> list[str]:
    """Run the service's command as compose would (its words, then ``sh -c``), writing the
    configuration here instead of starting the broker."""
    words = shlex.split(_service("mosquitto")["command"].replace("$$", "$"))
    assert words[:2] == ["sh", "-c"], words
    script, starts = words[2].split(" && mosquitto -c ", 1)
    assert starts == "/mosquitto/config/mosquitto.conf"
    out = tmp_path / "mosquitto.conf"
    script = script.replace("/fleet/mosquitto.conf", str(SHIPPED)).replace(
        "/mosquitto/config/mosquitto.conf", str(out)
    )
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)
    return [line for line in out.read_text().splitlines() if line and not line.startswith("#")]


def test_compose_publishes_only_the_tls_listener() -> None:
    mosquitto = _service("mosquitto")
    assert mosquitto["ports"] == ["8883:8883"]
    assert not any(str(p).split(":")[-1] == "1883" for p in mosquitto.get("ports", []))


def test_the_generated_broker_configuration(tmp_path: Path) -> None:
    lines = _generated_config(tmp_path)
    listeners = [line for line in lines if line.startswith("listener ")]
    assert listeners == ["listener 1883", "listener 8883"]  # 1883: the compose network only
    tls = lines[lines.index("listener 8883") :]
    assert {"cafile", "certfile", "keyfile", "tls_version"} <= {line.split()[0] for line in tls}
    assert all(
        line.split()[1].startswith("/mosquitto/certs/")
        for line in tls
        if line.split()[0] in {"cafile", "certfile", "keyfile"}
    )
    assert "max_packet_size 131072" in lines
    assert "allow_anonymous false" in lines


def test_devices_are_told_the_tls_address() -> None:
    env = _service("fleet")["environment"]
    assert env["FLEET_MQTT_DEVICE_URL"].startswith("mqtts://")
    assert env["FLEET_MQTT_DEVICE_URL"].endswith(":8883")
