"""Enrollments per second, and deliveries per second to simulated devices until all have
acknowledged, through the real parts: ``fleet serve`` (2 workers, SQLite), mosquitto with
dynamic security, real envelopes opened by real device keys.

    .venv/bin/python -m bench.delivery                 # 1,000 devices
    .venv/bin/python -m bench.delivery --devices 200   # quicker

Devices are simulated by 4 processes of 250 paho clients each (paho's select() loop fails past
a few hundred clients in one process: bench/README.md, "Enrollment and delivery"). Each opens
every envelope it receives with its own X25519 key, checks the signature, and acknowledges on
its status topic, as the agent does.
The delivery run is one reconciler pass (``fleet scheduler run-once``) that rotates every
device at once; the clock stops when the server has recorded every acknowledgement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device_agent.protocol.keys import public_key_b64
from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto

PER_PROCESS = 250
DEADLINE_S = 300


def _raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def enroll(server: str, secret: str, device_id: str) -> dict[str, Any]:
    key = X25519PrivateKey.generate()
    answer = requests.post(
        f"{server}/api/v1/enroll",
        timeout=60,
        json={
            "deviceId": device_id,
            "enrollmentSecret": secret,
            "x25519PublicKey": public_key_b64(key.public_key()),
            "ed25519PublicKey": public_key_b64(Ed25519PrivateKey.generate().public_key()),
        },
    )
    answer.raise_for_status()
    return {"id": device_id, "key": _raw(key).hex(), "enrollment": answer.json()}


def simulate(devices: list[dict[str, Any]], ready: Any, acks: Any, stop: Any) -> None:
    """One process: its devices connect, open what they get, acknowledge it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from device_agent.protocol.envelope import EnvelopeError, open_envelope
    from device_agent.protocol.keys import ed25519_public_from_b64

    clients = []
    for device in devices:
        login = device["enrollment"]["mqtt"]
        host, port = login["url"].removeprefix("mqtt://").split(":")
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(device["key"]))
        server_key = ed25519_public_from_b64(device["enrollment"]["serverSigningKey"])
        held = {"credentials": 0}

        def on_message(
            client: Any,
            _u: Any,
            msg: Any,
            *,
            device=device,
            key=key,
            server_key=server_key,
            held=held,
            login=login,
        ) -> None:
            if not msg.payload:
                return
            try:
                opened = open_envelope(
                    bytes(msg.payload),
                    device_id=device["id"],
                    device_private_key=key,
                    server_public_key=server_key,
                    last_version=max(0, held["credentials"] - 1),
                )
            except EnvelopeError:
                return
            held["credentials"] = opened.version  # a copy of what is held is acked again
            client.publish(
                login["topics"]["status"],
                json.dumps({"type": "ack", "kind": "credentials", "version": opened.version}),
                qos=1,
            )
            acks.put(1)

        def on_connect(
            client: Any, _u: Any, _f: Any, reason: Any, _p: Any, *, login=login, held=held
        ) -> None:
            client.subscribe(login["topics"]["credentials"], qos=1)
            client.publish(
                login["topics"]["status"], json.dumps({"type": "hello", "versions": held}), qos=1
            )
            ready.put(1)

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device['id']}")
        client.username_pw_set(login["username"], login["password"])
        client.on_message = on_message
        client.on_connect = on_connect
        client.connect(host, int(port))
        client.loop_start()
        clients.append(client)
    stop.wait(DEADLINE_S)
    for client in clients:
        client.disconnect()
        client.loop_stop()


def pending(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "fleet.db") as db:
        return int(
            db.execute("SELECT count(*) FROM deliveries WHERE state='pending'").fetchone()[0]
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/delivery.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-delivery-"))
    broker = Mosquitto().start()
    env = {
        **broker.fleet_env(),
        "FLEET_SCHEDULER_ENABLED": "false",
    }
    try:
        with FleetServer(work / "server", env=env) as server:
            secret = server.device_group("bench-group")
            started = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                devices = list(
                    pool.map(
                        lambda i: enroll(server.url, secret, f"bench-{i:05d}"), range(args.devices)
                    )
                )
            enroll_s = time.perf_counter() - started
            print(
                f"enrolled {args.devices} devices in {enroll_s:.1f} s: "
                f"{args.devices / enroll_s:.1f} enrollments/s (4 clients)"
            )

            ready, acks, stop = mp.Queue(), mp.Queue(), mp.Event()
            procs = [
                mp.Process(
                    target=simulate,
                    args=(devices[i : i + PER_PROCESS], ready, acks, stop),
                    daemon=True,
                )
                for i in range(0, len(devices), PER_PROCESS)
            ]
            for proc in procs:
                proc.start()
            for _ in devices:
                ready.get(timeout=DEADLINE_S)
            deadline = time.monotonic() + DEADLINE_S
            while pending(server.data_dir) and time.monotonic() < deadline:
                time.sleep(0.2)  # the enrollment credentials, acknowledged
            with sqlite3.connect(server.data_dir / "fleet.db") as db:
                db.execute("UPDATE devices SET rotate_due_at = '2000-01-01 00:00:00'")
            started = time.perf_counter()
            server.cli_ok("scheduler", "run-once")
            pass_s = time.perf_counter() - started
            while pending(server.data_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            deliver_s = time.perf_counter() - started
            left = pending(server.data_dir)
            stop.set()
            for proc in procs:
                proc.join(10)
            print(
                f"rotated and delivered to {args.devices} devices, all acknowledged, in "
                f"{deliver_s:.2f} s: {args.devices / deliver_s:.0f} deliveries/s "
                f"(the reconciler pass itself: {pass_s:.2f} s; unacknowledged: {left})"
            )
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "devices": args.devices,
                        "enroll_seconds": enroll_s,
                        "enrollments_per_s": args.devices / enroll_s,
                        "delivery_seconds": deliver_s,
                        "deliveries_per_s": args.devices / deliver_s,
                        "pass_seconds": pass_s,
                        "unacknowledged": left,
                    },
                    indent=2,
                )
            )
    finally:
        broker.stop()
        broker.cleanup()


if __name__ == "__main__":
    main()
