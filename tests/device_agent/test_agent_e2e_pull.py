"""Pulls from a real Distribution registry whose token endpoint is an in-test realm built from
the server's KeyRing and mint: the built-in puller and skopeo write OCI layouts that skopeo can
read back; and, with the whole agent running against a real mosquitto, a rotated password is
checked, acknowledged and used by the next pull without a restart, while forged envelopes and
refused passwords change nothing."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.backends import PullFailed, PullRequest
from device_agent.config import PullConfig
from device_agent.credentials import Credentials
from device_agent.images import parse_image
from device_agent.oci_puller import BuiltinPuller
from device_agent.skopeo_backend import SkopeoBackend
from device_agent.store import load_state
from device_agent.token_check import endpoint_checker
from fleet.registry_auth.keyring import KeyRing
from tests.device_agent.agent_mqtt import ServerSide
from tests.device_agent.agent_realm import ADMIN, ADMIN_PASSWORD, ISSUER, SERVICE, Realm
from tests.device_agent.conftest import Device
from tests.support import skopeo
from tests.support.oci import OciImage, build_oci_image, read_layer_file
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

APP = "samples/app"
SECRET_REPO = "private/other"
DEVICE_USER = "dev-puller"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-pull")


@pytest.fixture(scope="module")
def realm(workdir: Path) -> Iterator[Realm]:
    ring = KeyRing.open(workdir / "keys")
    ring.write_bundle(workdir / "bundle.pem")
    with Realm(ring) as running:
        yield running


@pytest.fixture(scope="module")
def registry(workdir: Path, realm: Realm) -> Iterator[Registry]:
    with Registry(
        realm=realm.url,
        service=SERVICE,
        issuer=ISSUER,
        rootcertbundle=workdir / "bundle.pem",
        directory=workdir / "registry",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def app_image(workdir: Path, registry: Registry) -> OciImage:
    image = build_oci_image(workdir / "app", tag="v1")
    admin = f"{ADMIN}:{ADMIN_PASSWORD}"
    for repository in (APP, SECRET_REPO):
        pushed = skopeo.copy_to_registry(image, registry.host_port, repository, "v1", admin)
        assert pushed.ok, pushed.stderr + registry.log_tail()
    return image


def device_login(realm: Realm, password: str, user: str = DEVICE_USER) -> Credentials:
    realm.accept(user, {password}, readable={APP})
    return Credentials(
        login_server="placeholder",
        username=user,
        password=password,
        slot="password1",
        expiry=None,
        version=1,
    )


def request_for(
    registry: Registry, credentials: Credentials, tmp_path: Path, image: str = f"{APP}:v1"
) -> PullRequest:
    login = Credentials(**{**credentials.__dict__, "login_server": registry.host_port})
    return PullRequest(
        image=parse_image(image, registry.host_port),
        credentials=login,
        output=tmp_path / "images",
        state_dir=tmp_path,
        tls_verify=False,
        platform="linux/arm64",
        timeout_s=60,
    )


def readable_by_skopeo(layout: Path, tag: str, out: Path) -> Path:
    """skopeo copies our layout to a dir: proof that what we wrote is a valid OCI layout."""
    done = skopeo._run(["--insecure-policy", "copy", f"oci:{layout}:{tag}", f"dir:{out}"])
    assert done.ok, done.stderr
    return out


@pytest.mark.parametrize("backend", [BuiltinPuller(), SkopeoBackend()], ids=["builtin", "skopeo"])
def test_backends_pull_into_an_oci_layout(
    backend, registry: Registry, realm: Realm, app_image: OciImage, tmp_path: Path
) -> None:
    request = request_for(registry, device_login(realm, "pw-" + backend.name), tmp_path)
    digest = backend.pull(request, threading.Event())
    assert digest == app_image.manifest_digest
    layout = tmp_path / "images" / "samples+app"
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    copied = readable_by_skopeo(layout, "v1", tmp_path / "copy")
    assert read_layer_file(copied, app_image.layer_digest) == app_image.content
    assert not list((tmp_path / "run").glob("auth-*")), "a temporary auth file was left"


@pytest.mark.parametrize("backend", [BuiltinPuller(), SkopeoBackend()], ids=["builtin", "skopeo"])
def test_a_refused_login_and_a_denied_repository_are_auth_failures(
    backend, registry: Registry, realm: Realm, app_image: OciImage, tmp_path: Path
) -> None:
    good = device_login(realm, "right-" + backend.name)
    wrong = Credentials(**{**good.__dict__, "password": "wrong"})
    with pytest.raises(PullFailed) as refused:
        backend.pull(request_for(registry, wrong, tmp_path), threading.Event())
    assert refused.value.auth, refused.value.message
    with pytest.raises(PullFailed) as denied:
        backend.pull(request_for(registry, good, tmp_path, f"{SECRET_REPO}:v1"), threading.Event())
    assert denied.value.auth, denied.value.message
    assert "wrong" not in refused.value.message and "right-" not in denied.value.message


def test_a_missing_tag_is_not_an_auth_failure(
    registry: Registry, realm: Realm, app_image: OciImage, tmp_path: Path
) -> None:
    request = request_for(registry, device_login(realm, "pw-x"), tmp_path, f"{APP}:nope")
    with pytest.raises(PullFailed) as missing:
        BuiltinPuller().pull(request, threading.Event())
    assert not missing.value.auth and "not found" in missing.value.message


def _is(type_: str, **fields: object) -> Callable[[dict], bool]:
    return lambda s: s.get("type") == type_ and all(s.get(k) == v for k, v in fields.items())


@pytest.mark.parametrize("backend", ["builtin", "skopeo"])
def test_rotation_while_running_is_used_by_the_next_pull(
    backend: str,
    make_device,
    start_agent,
    fleet_server: ServerSide,
    registry: Registry,
    realm: Realm,
    app_image: OciImage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    device: Device = make_device(token_endpoint=realm.url, login_server=registry.host_port)
    user, server = device.server.username, device.server
    first, second = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    realm.accept(user, {first}, readable={APP})
    pull = PullConfig(backend=backend, images=(f"{APP}:v1",), tls_verify=False, timeout_s=60)
    running = start_agent(device, pull=pull, check=endpoint_checker(realm.url, SERVICE))
    said = device.device_id

    fleet_server.publish(said, "credentials", server.credentials(first))
    fleet_server.wait_for(said, _is("ack", kind="credentials", version=1))
    pulled = fleet_server.wait_for(said, _is("pull"))
    assert pulled["ok"], pulled
    assert pulled["digest"] == app_image.manifest_digest
    assert pulled["image"] == f"{registry.host_port}/{APP}:v1"

    # Rotation: the server puts a second password in slot 2 (both work during the rollover),
    # delivers it; the agent proves it at the token endpoint, promotes it and acknowledges.
    realm.accept(user, {first, second})
    fleet_server.publish(said, "credentials", server.credentials(second, slot="password2"))
    fleet_server.wait_for(said, _is("ack", kind="credentials", version=2, slot="password2"))
    realm.accept(user, {second})  # slot 1 retired after the ack
    fleet_server.statuses.clear()

    # A forged envelope and a password the token endpoint refuses change nothing.
    forged = server.credentials("forged", signing_key=Ed25519PrivateKey.generate())
    fleet_server.publish(said, "credentials", forged)
    fleet_server.wait_for(said, _is("reject", reason="BadSignature"))
    fleet_server.publish(said, "credentials", server.credentials("not-accepted"))
    fleet_server.wait_for(said, _is("reject", reason="CredentialsRefused", version=4))

    before = len(realm.logins_of(user))
    fleet_server.publish(said, "commands", server.command("pull", images=[]))
    fleet_server.wait_for(said, _is("ack", kind="command", version=5))
    again = fleet_server.wait_for(said, _is("pull"))
    assert again["ok"], again
    used = {password for password, _ in realm.logins_of(user)[before:]}
    assert used == {second}, "the next pull used the new password, without a restart"
    current = load_state(device.state_dir).current
    assert current is not None and current.password == second and current.version == 2
    status = json.loads((device.state_dir / "status.json").read_text())
    assert status["credentials"]["version"] == 2 and status["last_pull"]["ok"]
    assert second not in (device.state_dir / "status.json").read_text()
    running.stop()
    assert "pulling" in caplog.text and "in use" in caplog.text
    for secret in (first, second, device.enrollment.mqtt.password):
        assert secret not in caplog.text


def test_a_refused_login_is_reported_and_backed_off(
    make_device,
    start_agent,
    fleet_server: ServerSide,
    registry: Registry,
    realm: Realm,
    app_image: OciImage,
) -> None:
    device: Device = make_device(token_endpoint=realm.url, login_server=registry.host_port)
    user, said = device.server.username, device.device_id
    password = secrets.token_urlsafe(12)
    realm.accept(user, {password}, readable={APP})
    pull = PullConfig(
        images=(f"{APP}:v1",), tls_verify=False, backoff_base_s=1.0, backoff_cap_s=2.0
    )
    start_agent(device, pull=pull, check=endpoint_checker(realm.url, SERVICE))
    fleet_server.publish(said, "credentials", device.server.credentials(password))
    fleet_server.wait_for(said, _is("pull", ok=True))
    realm.accept(user, set())  # e.g. disabled by an operator
    started = time.monotonic()
    fleet_server.publish(said, "commands", device.server.command("pull", images=[]))
    failed = fleet_server.wait_for(said, _is("pull", ok=False))
    assert "unauthorized" in failed["error"]
    time.sleep(1.5)
    refused = [ok for _, ok in realm.logins_of(user) if not ok]
    elapsed = time.monotonic() - started
    # one refused login per attempt, attempts at least backoff_base apart: no hammering
    assert 1 <= len(refused) <= 1 + elapsed / pull.backoff_base_s
    assert datetime.fromisoformat(failed["at"]) <= datetime.now(UTC)
