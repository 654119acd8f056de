"""Issue 13, part 1: a pull that lasts longer than its registry JWT is accepted still succeeds.

With 60 s JWTs the registry accepts one until ``exp`` + its 60 s leeway, checked at the start of
each request (a blob download that started keeps streaming). Here a real ``fleet serve`` gives
60 s JWTs, a real Distribution registry holds an image whose first layer is several MB of
random bytes, and skopeo and the agent's own puller (the ``builtin`` backend, in its child
process) pull it at the same time through :class:`SlowProxy`, each connection paced so that
the first layer alone takes longer than the first JWT lives. The blobs fetched after it (the
second layer, and for skopeo the config) are requests the first JWT can no longer make.

Asserted, from what the real parts did: both pulls succeed; every blob and the manifest are
byte-identical to what was pushed; the fleet server's access log shows each client asked the
token endpoint more than once; and the registry's log shows it authorized a request of each
client after the first JWT's acceptance ended, so a second JWT was used.

The token endpoint is not proxied: the registry's challenge names the fleet server's realm,
which the clients reach directly, as a device reaches a registry through a slow link and the
fleet server wherever it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from device_agent.pull.backend import PullRequest
from device_agent.pull.factory import make_backend
from device_agent.pull.images import parse_image
from device_agent.state.credentials import Credentials
from tests.e2e.fleet_process import FleetServer
from tests.e2e.stack import SERVER_ENV, Stack, ok, registry_for
from tests.support import skopeo
from tests.support.oci import LayeredImage, build_layered_image
from tests.support.registry import Registry
from tests.support.slow_proxy import Link, SlowProxy
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

# Device tokens' default since issue 13; the plain tokens here get it from the global setting
# (FLEET_TOKEN_LIFETIME, whose minimum it is).
JWT_LIFETIME_S = 60
REGISTRY_LEEWAY_S = 60  # Distribution 2.8 takes a JWT until exp + this
ACCEPTED_FOR_S = JWT_LIFETIME_S + REGISTRY_LEEWAY_S
# The first layer alone takes BIG_LAYER_BYTES / RATE = 135 s on each connection: 15 s past the
# first JWT's 120 s, a margin that only grows on a slower machine (the rate is a ceiling).
BIG_LAYER_BYTES = 4 * 1024 * 1024
SMALL_LAYER_BYTES = 4 * 1024
RATE_BYTES_PER_S = 31_000
PULL_TIMEOUT_S = 600.0  # a bound on a failure, scaled
CLOCK_SLACK_S = 1  # the access log's whole seconds, and the JWT's whole-second iat
REPOSITORY = "samples/long-pull"
TAG = "v1"
SKOPEO_TOKEN, AGENT_TOKEN = "LongPullSkopeo", "LongPullAgent"
SERVER_LOG_LINE = re.compile(
    r'^\S+ - (?P<user>\S+) \[(?P<time>[^\]]+)\] "GET /oauth2/token\?\S* HTTP/1\.1" 200 '
)
REGISTRY_LOG_LINE = re.compile(
    r'^time="(?P<time>[^".]+)(?:\.(?P<fraction>\d+))?Z" level=info msg="authorized request" '
    r'.*http\.request\.uri="?(?P<uri>[^" ]+)"? .*http\.request\.useragent=(?P<agent>\S+)'
)


@dataclass(frozen=True)
class Pulled:
    """One client's pull: how long it took, what it wrote, and what it said."""

    seconds: float
    output: Path
    digest: str
    error: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server giving 60 s JWTs, on SQLite only: the subject is the JWT's life, not the store."""
    directory = tmp_path_factory.mktemp("long-pull")
    env = {**SERVER_ENV, "FLEET_TOKEN_LIFETIME": str(JWT_LIFETIME_S)}
    with (
        FleetServer(directory / "server", env=env) as server,
        registry_for(server, directory / "registry") as registry,
    ):
        yield Stack(server, registry, directory / "work")


@pytest.fixture(scope="module")
def image(stack: Stack) -> LayeredImage:
    """Pushed straight to the registry (no proxy): a big random layer first, then a small one."""
    built = build_layered_image(
        stack.workdir / "long-image",
        [os.urandom(BIG_LAYER_BYTES), os.urandom(SMALL_LAYER_BYTES)],
        tag=TAG,
    )
    pusher = stack.given_token("LongPullPusher", REPOSITORY, "content/read", "content/write")
    ok(skopeo.copy_to_registry(built, stack.registry.host_port, REPOSITORY, TAG, pusher))
    return built


def _pull_with_skopeo(proxy: SlowProxy, creds: str, output: Path) -> Pulled:
    output.mkdir(parents=True)
    clock = time.monotonic()
    result = skopeo.copy_from_registry(
        proxy.host_port, REPOSITORY, TAG, output, creds, command_timeout_s=PULL_TIMEOUT_S
    )
    manifest = output / "manifest.json"
    digest = _file_digest(manifest) if result.ok and manifest.exists() else ""
    error = "" if result.ok else result.output
    return Pulled(time.monotonic() - clock, output, digest, error)


def _pull_with_agent(proxy: SlowProxy, creds: str, output: Path) -> Pulled:
    name, _, password = creds.partition(":")
    credentials = Credentials(
        login_server=proxy.host_port,
        username=name,
        password=password,
        slot="password1",
        expiry=None,
        version=1,
    )
    request = PullRequest(
        image=parse_image(f"{REPOSITORY}:{TAG}", proxy.host_port),
        credentials=credentials,
        output=output,
        state_dir=output.parent / "agent-state",
        tls_verify=False,
        platform="linux/arm64",
        timeout_s=scaled(PULL_TIMEOUT_S),
    )
    clock = time.monotonic()
    try:
        digest, error = make_backend("builtin").pull(request, threading.Event()), ""
    except Exception as failure:  # reported by the test, with the other client's outcome
        digest, error = "", f"{type(failure).__name__}: {failure}"
    return Pulled(time.monotonic() - clock, output, digest, error)


def _file_digest(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def token_requests(server: FleetServer, name: str) -> list[datetime]:
    """When the token endpoint gave ``name`` a JWT (200), from gunicorn's access log; whole
    seconds."""
    found = []
    for line in server.log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        match = SERVER_LOG_LINE.match(line)
        if match and match["user"] == name:
            found.append(datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z"))
    return found


def authorized_requests(registry: Registry, agent_prefix: str) -> list[tuple[datetime, str]]:
    """(time, uri) of every request the registry authorized for a client whose User-Agent
    starts with ``agent_prefix``, from its log."""
    found = []
    for line in registry.log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        match = REGISTRY_LOG_LINE.match(line)
        if match and match["agent"].startswith(agent_prefix):
            at = datetime.fromisoformat(match["time"]).replace(tzinfo=UTC)
            at += timedelta(microseconds=int((match["fraction"] or "0")[:6].ljust(6, "0")))
            found.append((at, match["uri"]))
    return found


def blobs_in_layout(layout: Path) -> dict[str, bytes]:
    return {f"sha256:{p.name}": p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def blobs_in_dir(directory: Path) -> dict[str, bytes]:
    """A skopeo ``dir:`` copy: every blob is a file named by its hex digest."""
    return {
        f"sha256:{p.name}": p.read_bytes()
        for p in directory.iterdir()
        if re.fullmatch(r"[0-9a-f]{64}", p.name)
    }


def test_the_registrys_challenge_through_the_proxy_names_the_unproxied_realm(
    stack: Stack,
) -> None:
    with SlowProxy(stack.registry.host_port, Link()) as proxy:
        answer = requests.get(f"http://{proxy.host_port}/v2/", timeout=scaled(10))
    assert answer.status_code == 401
    assert f'realm="{stack.server.realm}"' in answer.headers["WWW-Authenticate"]
    asked = stack.ask_token(stack.given_token("LongPullProbe", REPOSITORY, "content/read"))
    assert asked.status_code == 200 and asked.json()["expires_in"] == JWT_LIFETIME_S


def test_pulls_that_outlast_their_jwt_succeed_with_skopeo_and_the_agent(
    stack: Stack, image: LayeredImage
) -> None:
    creds = {
        name: stack.given_token(name, REPOSITORY, "content/read")
        for name in (SKOPEO_TOKEN, AGENT_TOKEN)
    }
    out = stack.workdir / "long-pulls"
    with (
        SlowProxy(stack.registry.host_port, Link(down_bytes_per_s=RATE_BYTES_PER_S)) as proxy,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        by_skopeo = pool.submit(_pull_with_skopeo, proxy, creds[SKOPEO_TOKEN], out / "skopeo")
        by_agent = pool.submit(_pull_with_agent, proxy, creds[AGENT_TOKEN], out / "agent")
        pulled = {"skopeo": by_skopeo.result(), "agent": by_agent.result()}

    for client, result in pulled.items():
        print(f"long pull, {client}: {result.seconds:.1f} s through {RATE_BYTES_PER_S} B/s")
    assert {c: r.error for c, r in pulled.items()} == {"skopeo": "", "agent": ""}

    expected = {d: image.blob(d) for d in image.blob_digests}
    assert pulled["skopeo"].digest == image.manifest_digest
    assert blobs_in_dir(pulled["skopeo"].output) == expected
    assert pulled["agent"].digest == image.manifest_digest
    layout = pulled["agent"].output / REPOSITORY.replace("/", "+")
    assert blobs_in_layout(layout) == {
        **expected,
        image.manifest_digest: image.blob(image.manifest_digest),
    }

    for client, name, agent_prefix in (
        ("skopeo", SKOPEO_TOKEN, "skopeo/"),
        ("agent", AGENT_TOKEN, "python-requests/"),
    ):
        asked = token_requests(stack.server, name)
        # the first JWT was issued within asked[0]'s second; the registry took it until
        # exp + leeway: no later than this
        first_jwt_dead = asked[0] + timedelta(seconds=ACCEPTED_FOR_S + CLOCK_SLACK_S)
        late = [
            uri
            for at, uri in authorized_requests(stack.registry, agent_prefix)
            if at > first_jwt_dead
        ]
        print(
            f"long pull, {client}: {len(asked)} token requests at "
            f"{', '.join(a.strftime('%H:%M:%S') for a in asked)}; "
            f"{len(late)} requests authorized after the first JWT's end {first_jwt_dead:%H:%M:%S}"
        )
        assert len(asked) >= 2, (client, asked)
        assert late, f"{client}: no request after the first JWT's acceptance ended"
        assert pulled[client].seconds > ACCEPTED_FOR_S
