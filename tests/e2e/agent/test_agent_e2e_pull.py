"""Pulls from a real Distribution registry whose token endpoint is the real ``fleet serve``: the
built-in puller and skopeo write OCI layouts that skopeo can read back, a wrong password and a
repository outside the token's rules are auth failures; and, with the whole agent running
against a real mosquitto, a password rotated on the server is checked at the server's token
endpoint, acknowledged and used by the next pull without a restart, once the old one is gone,
while forged envelopes and passwords the server refuses change nothing.

The envelopes are sealed by the test's ``FakeServer`` (so a test can seal what the server never
would, a forged or a wrong password); every password is a real token's, made and rotated
through the server's REST API as an operator does.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.pull.backend import PullFailed, PullRequest
from device_agent.pull.images import parse_image
from device_agent.pull.oci_puller import BuiltinPuller
from device_agent.pull.skopeo_backend import SkopeoBackend
from device_agent.runtime.token_check import endpoint_checker
from device_agent.state.config import PullConfig
from device_agent.state.credentials import Credentials
from device_agent.state.store import load_state
from tests.e2e.agent.agent_mqtt import ServerSide
from tests.e2e.agent.agent_stack import SERVICE, AgentStack, Login
from tests.e2e.agent.conftest import Device
from tests.support import skopeo
from tests.support.oci import OciImage, read_layer_file
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

APP = "samples/app"
SECRET_REPO = "private/other"
PULL_TIMEOUT_S = 60.0  # unscaled bound the backends are given


@pytest.fixture(scope="module")
def app_image(agent_stack: AgentStack) -> OciImage:
    """One image, pushed to APP and to SECRET_REPO (which no device token may read)."""
    image = agent_stack.push(APP, "v1")
    pushed = skopeo.copy_to_registry(
        image, agent_stack.registry.host_port, SECRET_REPO, "v1", agent_stack.pusher.basic
    )
    assert pushed.ok, pushed.stderr
    return image


def token_name(what: str) -> str:
    return f"agent-{what}-{secrets.token_hex(3)}"


def credentials_of(login: Login, stack: AgentStack) -> Credentials:
    return Credentials(
        login_server=stack.registry.host_port,
        username=login.username,
        password=login.password,
        slot="password1",
        expiry=None,
        version=1,
    )


def request_for(
    stack: AgentStack, credentials: Credentials, tmp_path: Path, image: str = f"{APP}:v1"
) -> PullRequest:
    return PullRequest(
        image=parse_image(image, stack.registry.host_port),
        credentials=credentials,
        output=tmp_path / "images",
        state_dir=tmp_path,
        tls_verify=False,
        platform="linux/arm64",
        timeout_s=scaled(PULL_TIMEOUT_S),
    )


def readable_by_skopeo(layout: Path, tag: str, out: Path) -> Path:
    """skopeo copies our layout to a dir: proof that what we wrote is a valid OCI layout."""
    done = skopeo._run(["--insecure-policy", "copy", f"oci:{layout}:{tag}", f"dir:{out}"])
    assert done.ok, done.stderr
    return out


@pytest.mark.parametrize("backend", [BuiltinPuller(), SkopeoBackend()], ids=["builtin", "skopeo"])
def test_backends_pull_into_an_oci_layout(
    backend, agent_stack: AgentStack, app_image: OciImage, tmp_path: Path
) -> None:
    login = agent_stack.read_token(token_name(backend.name), APP)
    request = request_for(agent_stack, credentials_of(login, agent_stack), tmp_path)
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
    backend, agent_stack: AgentStack, app_image: OciImage, tmp_path: Path
) -> None:
    good = credentials_of(agent_stack.read_token(token_name(backend.name), APP), agent_stack)
    wrong = Credentials(**{**good.__dict__, "password": "wrong-password"})
    with pytest.raises(PullFailed) as refused:
        backend.pull(request_for(agent_stack, wrong, tmp_path), threading.Event())
    assert refused.value.auth, refused.value.message
    secret_image = f"{SECRET_REPO}:v1"
    with pytest.raises(PullFailed) as denied:
        backend.pull(request_for(agent_stack, good, tmp_path, secret_image), threading.Event())
    assert denied.value.auth, denied.value.message
    assert "wrong-password" not in refused.value.message
    assert good.password not in denied.value.message


def test_a_missing_tag_is_not_an_auth_failure(
    agent_stack: AgentStack, app_image: OciImage, tmp_path: Path
) -> None:
    login = agent_stack.read_token(token_name("missing"), APP)
    request = request_for(agent_stack, credentials_of(login, agent_stack), tmp_path, f"{APP}:nope")
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
    agent_stack: AgentStack,
    app_image: OciImage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = agent_stack
    first = stack.read_token(token_name(f"rot-{backend}"), APP)
    device: Device = make_device(
        token_endpoint=stack.realm,
        login_server=stack.registry.host_port,
        registry_username=first.username,
    )
    server, said = device.server, device.device_id
    pull = PullConfig(
        backend=backend, images=(f"{APP}:v1",), tls_verify=False, timeout_s=scaled(PULL_TIMEOUT_S)
    )
    running = start_agent(device, pull=pull, check=endpoint_checker(stack.realm, SERVICE))

    marker = fleet_server.marker()
    fleet_server.publish(said, "credentials", server.credentials(first.password))
    fleet_server.wait_for(said, _is("ack", kind="credentials", version=1), since=marker)
    pulled = fleet_server.wait_for(said, _is("pull"), since=marker)
    assert pulled["ok"], pulled
    assert pulled["digest"] == app_image.manifest_digest
    assert pulled["image"] == f"{stack.registry.host_port}/{APP}:v1"

    # Rotation: a second password in slot 2 (both work during the rollover), delivered; the
    # agent proves it at the server's token endpoint, promotes it and acknowledges.
    second = stack.generate_password(first.username, "password2")
    fleet_server.publish(said, "credentials", server.credentials(second.password, slot="password2"))
    fleet_server.wait_for(said, _is("ack", kind="credentials", version=2, slot="password2"))
    stack.delete_password(first.username, "password1")  # slot 1 retired after the ack
    assert stack.slots(first.username) == ["password2"]
    assert stack.token_answer(first, APP) == 401, "the old password is refused from now on"
    assert stack.token_answer(second, APP) == 200

    # A forged envelope and a password the token endpoint refuses change nothing.
    marker = fleet_server.marker()
    forged = server.credentials("forged", signing_key=Ed25519PrivateKey.generate())
    fleet_server.publish(said, "credentials", forged)
    fleet_server.wait_for(said, _is("reject", reason="BadSignature"), since=marker)
    fleet_server.publish(said, "credentials", server.credentials("not-accepted"))
    refused = _is("reject", reason="CredentialsRefused", version=4)
    fleet_server.wait_for(said, refused, since=marker)

    # The next pull can only succeed with the new password: the server refuses the old one.
    marker = fleet_server.marker()
    fleet_server.publish(said, "commands", server.command("pull", images=[]))
    fleet_server.wait_for(said, _is("ack", kind="command", version=5), since=marker)
    again = fleet_server.wait_for(said, _is("pull"), since=marker)
    assert again["ok"], again
    assert again["digest"] == app_image.manifest_digest
    current = load_state(device.state_dir).current
    assert current is not None and current.password == second.password
    assert current.version == 2
    status = json.loads((device.state_dir / "status.json").read_text())
    assert status["credentials"]["version"] == 2 and status["last_pull"]["ok"]
    assert second.password not in (device.state_dir / "status.json").read_text()
    running.stop()
    assert "pulling" in caplog.text and "in use" in caplog.text
    for secret in (first.password, second.password, device.enrollment.mqtt.password):
        assert secret not in caplog.text


def test_a_refused_login_is_reported_and_backed_off(
    make_device,
    start_agent,
    fleet_server: ServerSide,
    agent_stack: AgentStack,
    app_image: OciImage,
) -> None:
    """Once the server refuses the device's token, every attempt is reported as an auth
    failure, and attempts come at least ``backoff_base`` apart: no hammering."""
    stack = agent_stack
    login = stack.read_token(token_name("backoff"), APP)
    device: Device = make_device(
        token_endpoint=stack.realm,
        login_server=stack.registry.host_port,
        registry_username=login.username,
    )
    said = device.device_id
    pull = PullConfig(
        images=(f"{APP}:v1",), tls_verify=False, backoff_base_s=1.0, backoff_cap_s=2.0
    )
    start_agent(device, pull=pull, check=endpoint_checker(stack.realm, SERVICE))
    marker = fleet_server.marker()
    fleet_server.publish(said, "credentials", device.server.credentials(login.password))
    fleet_server.wait_for(said, _is("pull", ok=True), since=marker)

    stack.api("PATCH", f"/tokens/{login.username}", {"status": "disabled"})  # by an operator
    assert stack.token_answer(login, APP) == 401
    marker = fleet_server.marker()
    fleet_server.publish(said, "commands", device.server.command("pull", images=[]))
    failures = fleet_server.wait_for_many(said, _is("pull", ok=False), count=3, since=marker)
    for _, failed in failures:
        assert "unauthorized" in failed["error"], failed
        assert datetime.fromisoformat(failed["at"]) <= datetime.now(UTC)
    arrivals = [arrival for arrival, _ in failures]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Each retry is scheduled at least backoff_base after the failure before it; the reports
    # arrive over the same connection, so their spacing keeps that floor (less a little jitter
    # in delivery, far below the time one pull takes).
    assert min(gaps) >= pull.backoff_base_s * 0.9, gaps
