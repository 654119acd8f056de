"""Two ``fleet serve`` on one PostgreSQL schema, each with a data directory of its own and the
same secret key, beside one mosquitto (dynamic security) and one Distribution registry.

A device enrolled through server 1 and rotated through server 2 accepts both envelopes; the
registry accepts the JWTs both servers sign; with both running the scheduler, SIGKILL of the
leader's whole process group (gunicorn master and workers) hands the leadership to the other
within two passes, and every device due for rotation around the kill is rotated exactly once
(counted from the deliveries table).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.e2e.delivery.device import WireDevice
from tests.e2e.fleet_process import FleetServer
from tests.support import skopeo
from tests.support.mosquitto import Mosquitto
from tests.support.oci import build_oci_image
from tests.support.ports import free_port
from tests.support.postgres import fresh_schema
from tests.support.registry import Registry
from tests.support.timing import scaled, wait_until

SERVICE = "cluster-registry"
ISSUER = "fleet-cluster"
REPOSITORY = "edge/app"
INTERVAL_S = 2  # the scheduler's pass interval on both servers
HTTP_TIMEOUT_S = 30.0
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass
class Cluster:
    broker: Mosquitto
    one: FleetServer
    two: FleetServer
    registry: Registry
    engine: Engine
    secret: str
    env: dict[str, str]
    url: str


@contextlib.contextmanager
def cluster(tmp_path: Path, *, scheduler: bool) -> Iterator[Cluster]:
    """Broker, registry and two servers on one fresh schema; a device group ``pilots`` that
    may read ``edge/*``. The registry trusts server 1's bundle only: server 2's is the same."""
    broker = Mosquitto().start()
    registry_port = free_port()
    env = {
        "FLEET_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "FLEET_REGISTRY_SERVICE": SERVICE,
        "FLEET_TOKEN_ISSUER": ISSUER,
        **broker.fleet_env(),
        "FLEET_REGISTRY_LOGIN_SERVER": f"127.0.0.1:{registry_port}",
        "FLEET_SCHEDULER_ENABLED": "true" if scheduler else "false",
        "FLEET_SCHEDULER_INTERVAL_SECONDS": str(INTERVAL_S),
    }
    try:
        with (
            fresh_schema("fleet_cluster") as url,
            FleetServer(tmp_path / "one", env=env, database_url=url) as one,
        ):
            two = FleetServer(tmp_path / "two", env=env, database_url=url)
            two.init()  # its own data directory; the keys are the database's
            two.api_key = one.api_key  # operator API keys are rows too
            two.start()
            engine = create_engine(url)
            try:
                with Registry(
                    realm=one.realm,
                    service=SERVICE,
                    issuer=ISSUER,
                    rootcertbundle=one.bundle,
                    directory=tmp_path / "registry",
                    port=registry_port,
                ) as registry:
                    secret = one.device_group("pilots")
                    yield Cluster(broker, one, two, registry, engine, secret, env, url)
            finally:
                two.stop()
                engine.dispose()
    finally:
        broker.stop()
        broker.cleanup()


def push_image(parts: Cluster, tmp_path: Path) -> None:
    made = parts.one.cli_ok(
        "token", "create", "--name", "pusher", "--scope-map", "_repositories_push"
    ).json()
    creds = f"pusher:{made['credentials']['passwords'][0]['value']}"
    image = build_oci_image(tmp_path / "image")
    pushed = skopeo.copy_to_registry(image, parts.registry.host_port, REPOSITORY, "1.0", creds)
    assert pushed.ok, pushed.output


def jwt_from(server: FleetServer, credentials: dict[str, str]) -> str:
    answer = requests.get(
        server.realm,
        params={"service": SERVICE, "scope": f"repository:{REPOSITORY}:pull"},
        auth=(credentials["username"], credentials["password"]),
        timeout=scaled(HTTP_TIMEOUT_S),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def manifest_status(parts: Cluster, token: str) -> int:
    answer = requests.get(
        f"{parts.registry.url}/v2/{REPOSITORY}/manifests/1.0",
        headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_TYPES},
        timeout=scaled(HTTP_TIMEOUT_S),
    )
    return answer.status_code


def credential_versions(engine: Engine) -> dict[str, list[int]]:
    """Every device's credential envelopes, by version: 1 at enrollment, one per rotation."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT d.device_id, x.version FROM deliveries x JOIN devices d "
                "ON d.id = x.device_pk WHERE x.kind = 'credentials' ORDER BY x.version"
            )
        ).all()
    versions: dict[str, list[int]] = {}
    for device_id, version in found:
        versions.setdefault(device_id, []).append(int(version))
    return versions


def runs(engine: Engine) -> list[tuple[int, datetime]]:
    """The scheduler's passes: the process that ran each (gunicorn worker pid) and its start."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT node, started_at FROM scheduler_runs ORDER BY id")).all()
    return [(int(node.rsplit(":", 1)[1]), started) for node, started in found]


def make_due(engine: Engine, device_ids: list[str]) -> None:
    """These devices' passwords are due for rotation now (rather than in 23 days)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE devices SET rotate_due_at = now() - interval '1 minute' "
                "WHERE device_id = ANY(:ids)"
            ),
            {"ids": device_ids},
        )


@pytest.mark.postgres
def test_enrolled_through_one_rotated_through_the_other_pulls_with_either(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, scheduler=False) as parts:
        assert parts.one.bundle.read_bytes() == parts.two.bundle.read_bytes()
        # A third server given another secret key cannot open the keys: it refuses to start.
        stranger_env = {**parts.env, "FLEET_SECRET_KEY": base64.b64encode(b"x" * 32).decode()}
        stranger = FleetServer(tmp_path / "three", env=stranger_env, database_url=parts.url)
        refused = stranger.cli("init")
        assert refused.returncode != 0 and "same secret key" in refused.stderr, refused.stderr
        served = stranger.cli("serve", "--host", "127.0.0.1", "--port", str(free_port()))
        assert served.returncode != 0 and "same secret key" in served.stderr, served.stderr
        assert not (parts.one.data_dir / "envelope-signing.key").exists()
        assert not (parts.two.data_dir / "signing-keys" / "keyring.json").exists()
        push_image(parts, tmp_path)
        device = WireDevice("pi-cluster-1", parts.one.url)
        assert device.enroll(parts.secret).status_code == 201
        other = WireDevice("pi-cluster-2", parts.two.url)
        assert other.enroll(parts.secret).status_code == 201
        assert other.enrollment["serverSigningKey"] == device.enrollment["serverSigningKey"]

        assert device.connect().is_failure is False
        device.wait_for(lambda: device.versions["credentials"] >= 1, "its first credentials")
        first = dict(device.credentials or {})
        parts.two.cli_ok("device", "rotate", "--name", device.device_id, "--now")
        device.wait_for(lambda: device.versions["credentials"] >= 2, "credentials via server 2")
        # Both envelopes opened: signed by the one shared key (any other key is BadSignature).
        # A copy of a version it already has (republished on its hello) is refused as stale.
        assert set(device.refused) <= {"StaleVersion"}, device.refused
        rotated = dict(device.credentials or {})
        assert rotated["password"] != first["password"]

        tokens = [jwt_from(server, rotated) for server in (parts.one, parts.two)]
        kids = {jwt.get_unverified_header(token)["kid"] for token in tokens}
        assert len(kids) == 1  # one key ring
        assert [manifest_status(parts, token) for token in tokens] == [200, 200]
        pulled = skopeo.copy_from_registry(
            parts.registry.host_port,
            REPOSITORY,
            "1.0",
            tmp_path / "pulled",
            f"{rotated['username']}:{rotated['password']}",
        )
        assert pulled.ok, pulled.output

        # A key rotated through server 2 signs on server 1 too, and both bundles follow.
        parts.two.cli_ok("keys", "rotate", "--publish-delay", "0")
        new_kid = jwt.get_unverified_header(jwt_from(parts.two, rotated))["kid"]
        assert new_kid not in kids
        wait_until(
            lambda: jwt.get_unverified_header(jwt_from(parts.one, rotated))["kid"] == new_kid,
            "server 1 signing with the key server 2 made",
        )
        assert parts.one.bundle.read_bytes() == parts.two.bundle.read_bytes()
        device.disconnect()


@pytest.mark.postgres
def test_sigkill_of_the_scheduler_leader_hands_over_and_rotates_nobody_twice(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, scheduler=True) as parts:
        ids = [f"pi-fail-{i}" for i in range(12)]
        for device_id in ids:
            assert WireDevice(device_id, parts.one.url).enroll(parts.secret).status_code == 201
        leader_pid = wait_until(lambda: runs(parts.engine)[-1:], "a first pass")[0][0]
        groups = {server.pid: server for server in (parts.one, parts.two)}
        leader = groups[os.getpgid(leader_pid)]
        survivor = parts.two if leader is parts.one else parts.one
        assert survivor.pid is not None

        make_due(parts.engine, ids[:6])  # due before the kill: the leader may be at them
        time.sleep(INTERVAL_S / 2)
        killed_at = time.time()
        leader.kill()
        make_due(parts.engine, ids[6:])  # due after: only the survivor can rotate them

        def rotated_all() -> bool:
            versions = credential_versions(parts.engine)
            return all(len(versions.get(d, [])) >= 2 for d in ids)

        wait_until(rotated_all, "every due device rotated", timeout=60)
        after = [(pid, at) for pid, at in runs(parts.engine) if at.timestamp() > killed_at]
        assert after, "no pass after the kill"
        assert {os.getpgid(pid) for pid, _ in after} == {survivor.pid}
        took_over = after[0][1].timestamp() - killed_at
        print(f"the survivor's first pass started {took_over:.2f} s after the SIGKILL")
        assert took_over <= scaled(2 * INTERVAL_S), f"took over after {took_over:.1f} s"

        time.sleep(2 * INTERVAL_S)  # two more passes find nothing left to do
        versions = credential_versions(parts.engine)
        assert {d: versions[d] for d in ids} == {d: [1, 2] for d in ids}
