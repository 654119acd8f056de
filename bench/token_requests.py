"""How many ``/oauth2/token`` requests a device's pulls cost, counted in the server's access log.

    .venv/bin/python -m bench.token_requests                     # 60 s JWTs, every backend
    .venv/bin/python -m bench.token_requests --backends builtin,skopeo --slow-kib 64

The real parts (mosquitto, ``fleet serve --workers 2``, the Distribution registry) with
``FLEET_TOKEN_LIFETIME`` set to ``--lifetime``; the registry is reached through a TCP relay of
this program. For each backend, one device enrolls with ``fleet-agent enroll`` and runs
``fleet-agent run`` as it would in the field, only with ``--interval`` (the agent's minimum, 10 s)
instead of its default hour, until every configured image has been pulled ``--pulls`` times.
Every ``/oauth2/token`` line gunicorn logged meanwhile is counted: with a ``scope`` (a pull's
token) or without (the agent proving a newly delivered password), by status.

With ``--slow-kib N`` each backend then pulls, once, an image of ``--slow-layers`` layers of
``--slow-layer-mib`` MiB through the relay limited to N KiB/s shared by every connection: a pull
that outlasts the JWT. The token requests are listed with their time since the pull started.

Prints a table and writes everything to ``bench/results/token_requests-TIME.json``
(git-ignored). Exits non-zero when a pull failed or a token request was refused.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.fleet_process import FleetServer
from tests.support import skopeo
from tests.support.mosquitto import Mosquitto
from tests.support.oci import OciImage, build_oci_image
from tests.support.ports import LOOPBACK
from tests.support.registry import Registry

AGENT = str(Path(sys.executable).with_name("fleet-agent"))
BACKENDS = ("builtin", "skopeo", "podman")
IMAGES = ("edge/app:1.0", "edge/db:1.0")
SLOW_IMAGE = "edge/big:1.0"
CHUNK_BYTES = 16 * 1024
PULL_DEADLINE_S = 300.0
ENROLL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# 127.0.0.1 - - [03/Dec/2026:06:20:01 +0000] "GET /oauth2/token?scope=... HTTP/1.1" 200 ...
ACCESS_LINE = re.compile(r'\[([^\]]+)\] "GET (/oauth2/token[^ ]*) HTTP/[0-9.]+" (\d{3}) ')
ACCESS_TIME = "%d/%b/%Y:%H:%M:%S %z"


class SlowLink:
    """A TCP relay to ``target``; what flows back to clients shares ``rate`` bytes/s (0: no
    limit), as one slow uplink would, whatever the number of connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.rate = 0.0
        self._lock = threading.Lock()
        self._next_free = 0.0
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            ends = [2]
            for src, dst, slow in ((client, upstream, False), (upstream, client, True)):
                args = (src, dst, slow, ends, (client, upstream))
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self,
        src: socket.socket,
        dst: socket.socket,
        slow: bool,
        ends: list[int],
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := src.recv(CHUNK_BYTES):
                if slow:
                    self._wait(len(data))
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            ends[0] -= 1
            last = ends[0] == 0
        if last:
            for sock in pair:
                sock.close()

    def _wait(self, size: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            start = max(self._next_free, time.monotonic())
            self._next_free = start + size / self.rate
        time.sleep(max(0.0, start - time.monotonic()))


def layered_image(path: Path, tag: str, layers: int, layer_bytes: int) -> OciImage:
    """An OCI layout of ``layers`` uncompressed layers of random bytes (one file each)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descriptors, diff_ids = [], []
    for number in range(layers):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo(f"layer-{number}.bin")
            info.size = layer_bytes
            tar.addfile(info, io.BytesIO(os.urandom(layer_bytes)))
        data = out.getvalue()
        layer = put(data)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer})
        diff_ids.append(layer["digest"])
    config = {
        "architecture": "arm64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_descriptor = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **put(json.dumps(config).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": descriptors,
    }
    manifest_descriptor = {
        "mediaType": manifest["mediaType"],
        **put(json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return OciImage(
        path=path,
        tag=tag,
        manifest_digest=manifest_descriptor["digest"],
        config_digest=config_descriptor["digest"],
        layer_digest=descriptors[0]["digest"],
        content=b"",
    )


@dataclass
class TokenRequest:
    at: datetime
    path: str
    status: int

    @property
    def scoped(self) -> bool:
        return "scope=" in self.path


def token_requests(log: Path, offset: int) -> list[TokenRequest]:
    """The ``/oauth2/token`` lines of gunicorn's access log after byte ``offset``."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    found = []
    for match in ACCESS_LINE.finditer(text):
        stamp, path, status = match.groups()
        found.append(TokenRequest(datetime.strptime(stamp, ACCESS_TIME), path, int(status)))
    return found


@dataclass
class AgentRun:
    """``fleet-agent run`` with its output read line by line, each line timed."""

    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def count(self, word: str) -> int:
        return sum(1 for _, line in self.lines if word in line)

    def wait_for(self, done: Any, deadline_s: float) -> bool:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if done(self):
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def pulled(run: AgentRun) -> int:
    return sum(1 for _, line in run.lines if " pulled " in f" {line.split(': ', 1)[-1]}")


def failed(run: AgentRun) -> int:
    return sum(1 for _, line in run.lines if "pull of " in line and " failed" in line)


def start_agent(state: Path, config: Path) -> AgentRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_AGENT_STATE_DIR"] = str(state)
    process = subprocess.Popen(
        [AGENT, "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return AgentRun(process)


def enroll(server: FleetServer, secret: str, state: Path, device_id: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_AGENT_STATE_DIR"] = str(state)
    argv = [AGENT, "enroll", "--server", server.url, "--secret", secret, "--device-id", device_id]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=ENROLL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"fleet-agent enroll failed: {done.stderr.strip()}")


def write_config(path: Path, backend: str, images: list[str], interval: float) -> Path:
    listed = ", ".join(json.dumps(image) for image in images)
    path.write_text(
        f'[pull]\nbackend = "{backend}"\nimages = [{listed}]\n'
        f"interval = {interval}\ntls_verify = false\ntimeout = {PULL_DEADLINE_S:g}\n"
    )
    return path


def summarise(requests: list[TokenRequest]) -> dict[str, int]:
    return {
        "scoped_200": sum(1 for r in requests if r.scoped and r.status == 200),
        "unscoped_200": sum(1 for r in requests if not r.scoped and r.status == 200),
        "refused": sum(1 for r in requests if r.status != 200),
    }


def periodic(
    server: FleetServer, secret: str, work: Path, backend: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Enroll, run until every image has been pulled ``--pulls`` times; count token requests."""
    state = work / f"agent-{backend}"
    offset = server.log_file.stat().st_size
    enroll(server, secret, state, f"bench-{backend}")
    config = write_config(work / f"{backend}.toml", backend, list(IMAGES), args.interval)
    wanted = args.pulls * len(IMAGES)
    started = time.monotonic()
    run = start_agent(state, config)
    try:
        finished = run.wait_for(lambda r: pulled(r) + failed(r) >= wanted, PULL_DEADLINE_S)
    finally:
        run.stop()
    seconds = time.monotonic() - started
    time.sleep(0.5)  # gunicorn writes the access line after the answer
    requests = token_requests(server.log_file, offset)
    counts = summarise(requests)
    return {
        "backend": backend,
        "finished": finished,
        "seconds": round(seconds, 1),
        "pulls_ok": pulled(run),
        "pulls_failed": failed(run),
        **counts,
        "token_requests_per_pull": round(counts["scoped_200"] / max(1, pulled(run)), 3),
        "agent_log": [line for _, line in run.lines],
    }


def slow(work: Path, link: SlowLink, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """One pull of the big image through the slowed relay, with the device enrolled above."""
    state = work / f"agent-{backend}"
    config = write_config(work / f"{backend}-slow.toml", backend, [SLOW_IMAGE], 3600)
    log = args.server.log_file
    offset = log.stat().st_size
    link.rate = args.slow_kib * 1024
    run = start_agent(state, config)
    try:
        run.wait_for(lambda r: pulled(r) + failed(r) >= 1, PULL_DEADLINE_S)
    finally:
        run.stop()
        link.rate = 0
    time.sleep(0.5)
    requests = token_requests(log, offset)
    began = next((t for t, line in run.lines if "pulling " in line), time.time())
    ended = next((t for t, line in run.lines if " pulled " in line or "pull of " in line), began)
    return {
        "backend": backend,
        "pulls_ok": pulled(run),
        "pull_seconds": round(ended - began, 1),
        **summarise(requests),
        "token_requests_s_after_start": [
            round(r.at.timestamp() - began) for r in requests if r.scoped
        ],
        "agent_log": [line for _, line in run.lines],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lifetime", type=int, default=60, help="FLEET_TOKEN_LIFETIME [60]")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="[builtin,skopeo,podman]")
    parser.add_argument("--pulls", type=int, default=3, help="pulls of each image [3]")
    parser.add_argument("--interval", type=float, default=10.0, help="pull.interval [10]")
    parser.add_argument("--slow-kib", type=float, default=0, help="slow pull at KiB/s [none]")
    parser.add_argument("--slow-layers", type=int, default=3)
    parser.add_argument("--slow-layer-mib", type=float, default=2.0)
    parser.add_argument("--output", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs; devices' passwords)"
    )
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if any(b not in BACKENDS for b in backends):
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}")
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-tokens-"))
    broker = Mosquitto().start()
    server = FleetServer(
        work / "server",
        env={
            **broker.fleet_env(),
            "FLEET_SCHEDULER_ENABLED": "false",
            "FLEET_TOKEN_LIFETIME": str(args.lifetime),
        },
    )
    args.server = server
    registry = Registry(
        realm=server.realm,
        service="fleet-registry",
        issuer="fleet",
        rootcertbundle=server.bundle,
        directory=work / "registry",
    )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "lifetime_s": args.lifetime,
        "interval_s": args.interval,
        "images": list(IMAGES),
        "skopeo": subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout,
        "periodic": [],
        "slow": [],
    }
    link = SlowLink((registry.host, registry.port))  # the registry listens once started
    server._extra_env["FLEET_REGISTRY_LOGIN_SERVER"] = link.host_port  # what devices are told
    try:
        with server, registry:
            made = server.cli_ok(
                "token", "create", "--name", "bench-push", "--scope-map", "_repositories_push"
            ).json()
            creds = f"bench-push:{made['credentials']['passwords'][0]['value']}"
            for image in IMAGES:
                repository, tag = image.split(":")
                layout = build_oci_image(work / "img" / repository.replace("/", "+"), tag=tag)
                assert skopeo.copy_to_registry(
                    layout, registry.host_port, repository, tag, creds
                ).ok
            if args.slow_kib:
                repository, tag = SLOW_IMAGE.split(":")
                size = int(args.slow_layer_mib * 2**20)
                big = layered_image(work / "img" / "big", tag, args.slow_layers, size)
                pushed = skopeo.copy_to_registry(big, registry.host_port, repository, tag, creds)
                assert pushed.ok, pushed.output
            secret = server.device_group("bench")
            for backend in backends:
                row = periodic(server, secret, work, backend, args)
                results["periodic"].append(row)
                print(
                    f"{backend:>8}: {row['pulls_ok']} pulls ok, {row['pulls_failed']} failed in "
                    f"{row['seconds']} s; token requests: {row['scoped_200']} with a scope, "
                    f"{row['unscoped_200']} without, {row['refused']} refused "
                    f"({row['token_requests_per_pull']} per pull)",
                    flush=True,
                )
            if args.slow_kib:
                for backend in backends:
                    row = slow(work, link, backend, args)
                    results["slow"].append(row)
                    print(
                        f"{backend:>8} slow ({args.slow_layers} x {args.slow_layer_mib} MiB at "
                        f"{args.slow_kib:g} KiB/s): {row['pulls_ok']} pull ok in "
                        f"{row['pull_seconds']} s; token requests at "
                        f"{row['token_requests_s_after_start']} s, {row['refused']} refused",
                        flush=True,
                    )
    finally:
        link.close()
        broker.stop()
        broker.cleanup()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)  # the devices' passwords are in there
        if "podman" in backends:
            images = [f"{link.host_port}/{image}" for image in (*IMAGES, SLOW_IMAGE)]
            subprocess.run(["podman", "rmi", "--ignore", *images], capture_output=True)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.output / f"token_requests-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out}")
    rows = results["periodic"] + results["slow"]
    bad = [r for r in rows if r.get("pulls_failed") or r["refused"] or not r["pulls_ok"]]
    if bad:
        raise SystemExit(f"{len(bad)} run(s) had failed pulls or refused token requests")


if __name__ == "__main__":
    main()
