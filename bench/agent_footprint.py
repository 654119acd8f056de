"""The device agent's footprint on this machine, against the real server, broker and registry.

    .venv/bin/python -m bench.agent_footprint            # 32 MB layer
    .venv/bin/python -m bench.agent_footprint --layer-mb 8

Reports: start-up time of ``fleet-agent --version`` and of ``run`` until its first successful
pull; resident memory (VmRSS) idle and the peak (VmHWM) of the agent and of its pull child
while pulling; the installed size of the agent's dependencies in a fresh virtual environment
(only with ``--venv``, which installs ``./device_agent`` alone, as on a device). Target: under
40 MB resident when idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from tests.e2e.fleet_process import FleetServer
from tests.support import skopeo
from tests.support.mosquitto import Mosquitto
from tests.support.oci import build_oci_image
from tests.support.registry import Registry

AGENT = str(Path(sys.executable).with_name("fleet-agent"))
SAMPLE_S = 0.005


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return fields


def children_peak(pid: int) -> int:
    """The largest resident size among ``pid``'s child processes (the pull runs in one)."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            text = (entry / "status").read_text()
            if f"\nPPid:\t{pid}\n" in text:
                peak = max(peak, memory(int(entry.name)).get("VmHWM", 0))
    return peak


def installed_size() -> float:
    target = Path(tempfile.mkdtemp(prefix="agent-venv-"))
    venv.create(target, with_pip=True)
    subprocess.run([target / "bin/pip", "install", "-q", "./device_agent"], check=True)
    site = next((target / "lib").glob("python*/site-packages"))
    skip = ("pip", "setuptools", "_distutils_hack")
    return (
        sum(
            f.stat().st_size
            for f in site.rglob("*")
            if f.is_file() and not f.relative_to(site).parts[0].startswith(skip)
        )
        / 2**20
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layer-mb", type=int, default=32)
    parser.add_argument("--venv", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("bench/results/agent_footprint.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-agent-"))
    results: dict[str, float] = {}
    times = []
    for _ in range(9):
        started = time.perf_counter()
        subprocess.run([AGENT, "--version"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    results["version_s"] = statistics.median(times)
    broker = Mosquitto().start()
    server = FleetServer(
        work / "server",
        env={
            **broker.fleet_env(),
            "FLEET_SCHEDULER_ENABLED": "false",
        },
    )
    registry = Registry(
        realm=server.realm,
        service="fleet-registry",
        issuer="fleet",
        rootcertbundle=server.bundle,
        directory=work / "registry",
    )
    server._extra_env["FLEET_REGISTRY_LOGIN_SERVER"] = registry.host_port  # before it starts
    try:
        with server, registry:
            made = server.cli_ok(
                "token", "create", "--name", "bench-push", "--scope-map", "_repositories_push"
            ).json()
            creds = f"bench-push:{made['credentials']['passwords'][0]['value']}"
            image = build_oci_image(work / "img", content=os.urandom(args.layer_mb * 2**20))
            assert skopeo.copy_to_registry(image, registry.host_port, "edge/big", "1.0", creds).ok
            secret = server.device_group("bench")
            env = {**os.environ, "FLEET_AGENT_STATE_DIR": str(work / "agent")}
            subprocess.run(
                [
                    AGENT,
                    "enroll",
                    "--server",
                    server.url,
                    "--secret",
                    secret,
                    "--device-id",
                    "bench-1",
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            config = work / "agent.toml"
            config.write_text(
                '[pull]\nbackend = "builtin"\nimages = ["edge/big:1.0"]\n'
                "interval = 3600\ntls_verify = false\n"
            )
            log = work / "agent.log"
            started = time.perf_counter()
            with log.open("wb") as out:
                agent = subprocess.Popen(
                    [AGENT, "run", "--config", str(config)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            child_peak = 0
            deadline = time.monotonic() + 120
            while "pulled" not in log.read_text() and time.monotonic() < deadline:
                child_peak = max(child_peak, children_peak(agent.pid))
                time.sleep(SAMPLE_S)
            results["run_to_first_pull_s"] = time.perf_counter() - started
            results["pull_child_peak_mb"] = child_peak
            results["agent_peak_mb"] = memory(agent.pid)["VmHWM"]
            time.sleep(5)
            results["idle_mb"] = memory(agent.pid)["VmRSS"]
            agent.terminate()
            agent.wait(15)
    finally:
        broker.stop()
        broker.cleanup()
    if args.venv:
        results["installed_mb"] = installed_size()
    for key, value in results.items():
        print(f"{key:>22}: {value:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
