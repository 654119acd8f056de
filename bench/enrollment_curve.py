"""Enrollments per second as the fleet grows: 0 to 100,000 devices already enrolled.

    .venv/bin/python -m bench.enrollment_curve --checkpoints 0,2000 --batch 200   # a quick look
    .venv/bin/python -m bench.enrollment_curve                                    # dynsec, full
    .venv/bin/python -m bench.enrollment_curve --auth http                        # see below

The real parts: ``fleet serve`` (``--workers``, 2 by default) on PostgreSQL (a schema of its
own; ``--database sqlite`` for the default file) and mosquitto. At each checkpoint (devices
already enrolled, ``--checkpoints``) the fleet is topped up in bulk (``bench/fleet_fill.py``:
the rows an enrollment leaves, device tokens included) and then ``--batch`` devices enroll
through ``POST /api/v1/enroll``, each with its own fresh X25519 and Ed25519 keys, from
``--clients`` client processes (one kept-alive HTTP connection each). The rate is the batch over
the wall time from the first request to the last answer; a checkpoint stops starting requests
after ``--max-seconds`` (a slow broker would otherwise take hours) and reports what it did.

- ``--auth dynsec`` (the default, the product's default): mosquitto with dynamic security, as
  shipped. Before each checkpoint the broker is stopped and the plugin's JSON file is given every
  filled device's login and role (``bench/dynsec_file.py``), so the broker holds a login per
  enrolled device, as it would in production; then broker and server start again.
- ``--auth http``: the server runs with ``FLEET_MQTT_AUTH=http`` (nothing provisioned on the
  broker at enrollment) and mosquitto has no dynamic security, only a password file with the
  server's own login (``fleet-server``, the password every server derives from the secret key)
  for publishing. (A tree older than ``FLEET_MQTT_AUTH=http`` ignores the setting, tries dynamic
  security with no admin login, and the first enrollment fails; the bench then stops.)

Output: a table (rate, latency, CPU per enrollment of the server and the broker, the spread of
the curve) and ``bench/results/enrollment_curve-AUTH-DB-TIME.json``, with the machine and the
commit. ``--profile`` samples the gunicorn workers with py-spy during each batch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import create_engine

from bench import dynsec_file, fleet_fill, population, profiling
from bench.load import process_group_cpu_s
from bench.rotation_scale import _commit, proc_cpu_s, raise_fd_limit, worker_pids
from device_agent.protocol.keys import public_key_b64
from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import LOOPBACK, free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_CHECKPOINTS = "0,10000,25000,50000,100000"
GROUP = "bench-enroll"
FILL_PREFIX = "fill-"
FLAT_WITHIN = 0.20
MAX_CHECKPOINT = 1_000_000
MAX_BATCH = 100_000
HTTP_TIMEOUT_S = 120
WARM_UP = 4  # enrollments per checkpoint before the clock starts (connections, caches)
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
BROKER_START_S = 120.0
SERVER_LOGIN = "fleet-server"  # fleet.services.broker.SERVER_USERNAME


# -- the client processes -------------------------------------------------------------------


def client(server: str, secret: str, ids: list[str], deadline: float, out: Any) -> None:
    """Enroll ``ids`` one after another on one kept-alive connection, until ``deadline``."""
    session = requests.Session()
    latencies: list[float] = []
    errors: list[str] = []
    for device_id in ids:
        if time.time() >= deadline:
            break
        body = {
            "deviceId": device_id,
            "enrollmentSecret": secret,
            "x25519PublicKey": public_key_b64(X25519PrivateKey.generate().public_key()),
            "ed25519PublicKey": public_key_b64(Ed25519PrivateKey.generate().public_key()),
        }
        started = time.perf_counter()
        try:
            answer = session.post(f"{server}/api/v1/enroll", json=body, timeout=HTTP_TIMEOUT_S)
            ok = answer.status_code == 201
            detail = f"{answer.status_code}: {answer.text[:300]}"
        except requests.RequestException as exc:
            ok, detail = False, f"{exc.__class__.__name__}: {exc}"
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(detail)
    out.put({"latencies": latencies, "errors": errors[:5], "error_count": len(errors)})


def enroll_batch(
    server: str, secret: str, ids: list[str], clients: int, max_seconds: float
) -> dict[str, Any]:
    out: Any = mp.Queue()
    deadline = time.time() + max_seconds
    shares = [ids[i::clients] for i in range(clients)]
    procs = [
        mp.Process(target=client, args=(server, secret, share, deadline, out), daemon=True)
        for share in shares
        if share
    ]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=max_seconds + 2 * HTTP_TIMEOUT_S) for _ in procs]
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.join(10)
    latencies = sorted(x for r in reports for x in r["latencies"])
    return {
        "enrolled": len(latencies),
        "seconds": seconds,
        "latencies": latencies,
        "error_count": sum(r["error_count"] for r in reports),
        "errors": [e for r in reports for e in r["errors"]][:5],
    }


# -- the broker without dynamic security (--auth http) --------------------------------------


class PasswordFileBroker:
    """mosquitto with a password file (the server's own login) and nothing else."""

    def __init__(self, directory: Path) -> None:
        self.host = LOOPBACK
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.password_file = directory / "passwords"
        self.log_file = directory / "mosquitto.log"
        self.config_file = directory / "mosquitto.conf"
        self.password_file.touch()
        self.config_file.write_text(
            f"listener {self.port} {LOOPBACK}\nallow_anonymous false\n"
            f"password_file {self.password_file}\npersistence false\n"
            f"log_dest file {self.log_file}\nconnection_messages true\n"
            f"max_packet_size 131072\nuser {os.environ.get('USER', 'root')}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def add_login(self, username: str, password: str) -> None:
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(self.password_file), username, password],
            check=True,
            capture_output=True,
            timeout=30,
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None


# -- the bench ------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See bench/README.md for what is measured and how to read it.",
    )
    parser.add_argument("--auth", choices=("dynsec", "http"), default="dynsec")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLEET_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database where a schema may be created and dropped [%(default)s]",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS, help="[%(default)s]")
    parser.add_argument("--batch", type=int, default=1000, help="enrollments per checkpoint")
    parser.add_argument("--clients", type=int, default=8, help="client processes [8]")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="per checkpoint [180]")
    parser.add_argument("--profile", action="store_true", help="py-spy on the workers")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON results directory")
    args = parser.parse_args(argv)
    try:
        args.checkpoints = sorted({int(n) for n in args.checkpoints.split(",")})
    except ValueError:
        parser.error("--checkpoints is a comma-separated list of device counts")
    if not all(0 <= n <= MAX_CHECKPOINT for n in args.checkpoints):
        parser.error(f"each checkpoint must be 0 to {MAX_CHECKPOINT}")
    if not 1 <= args.batch <= MAX_BATCH:
        parser.error(f"--batch must be 1 to {MAX_BATCH}")
    if not 1 <= args.clients <= 64 or not 1 <= args.workers <= 16:
        parser.error("--clients must be 1 to 64 and --workers 1 to 16")
    if not 1 <= args.max_seconds <= 3600:
        parser.error("--max-seconds must be 1 to 3600")
    return args


class Rig:
    """The broker and the server of one run, restarted around each fill."""

    def __init__(self, args: argparse.Namespace, work: Path, db_url: str) -> None:
        self.args = args
        self.dynsec: Mosquitto | None = None
        self.plain: PasswordFileBroker | None = None
        if args.auth == "dynsec":
            self.dynsec = Mosquitto()
            env = {**self.dynsec.fleet_env(), "FLEET_SCHEDULER_ENABLED": "false"}
        else:
            self.plain = PasswordFileBroker(work / "broker")
            env = {
                "FLEET_MQTT_URL": self.plain.url,
                "FLEET_MQTT_AUTH": "http",
                # What the broker would send to fleet's /mqtt-auth routes; this broker asks
                # nothing (it has no device logins to check), but http mode requires one.
                "FLEET_MQTT_AUTH_SECRET": secrets.token_urlsafe(32),
                "FLEET_SCHEDULER_ENABLED": "false",
            }
        self.server = FleetServer(work / "server", env=env, database_url=db_url)

    @property
    def broker_pid(self) -> int:
        broker = self.dynsec or self.plain
        return (broker.pid if broker else None) or 0

    def first_start(self) -> str:
        """Broker and server up, the group made; returns the group's enrollment secret."""
        self.server.init()
        self.server.create_api_key()
        if self.plain is not None:
            self.plain.add_login(SERVER_LOGIN, _server_password(self.server))
        self._start_broker()
        self.server.start(self.args.workers)
        return self.server.device_group(GROUP)

    def _start_broker(self) -> None:
        if self.dynsec is not None:
            self.dynsec.start()
        elif self.plain is not None:
            self.plain.start()

    def refill(self, engine: Any, target: int, now: datetime) -> dict[str, Any]:
        """Top the fleet up to ``target`` devices (the database, and the broker's logins)."""
        have = fleet_fill.count_devices(engine)
        if have >= target:
            return {"added": 0, "fill_s": 0.0, "broker_file_s": 0.0}
        self.server.stop()
        ids = [f"{FILL_PREFIX}{n:07d}" for n in range(have, target)]
        key = public_key_b64(X25519PrivateKey.generate().public_key())
        added, fill_s = fleet_fill.fill_devices(
            engine, GROUP, (fleet_fill.FilledDevice(i, key, key) for i in ids), now=now
        )
        file_s = 0.0
        if self.dynsec is not None:
            started = time.perf_counter()
            self.dynsec.stop()  # it keeps the file in memory and would write it back
            shared = dynsec_file.password_fields("filler login, never used")
            dynsec_file.add_devices(self.dynsec.dynsec_file, ((i, shared) for i in ids))
            self.dynsec.start()
            file_s = time.perf_counter() - started
        self.server.start(self.args.workers)
        return {"added": added, "fill_s": round(fill_s, 2), "broker_file_s": round(file_s, 2)}

    def stop(self) -> None:
        self.server.stop()
        if self.dynsec is not None:
            self.dynsec.cleanup()
        if self.plain is not None:
            self.plain.stop()


def _server_password(server: FleetServer) -> str:
    from fleet.bootstrap import build_services
    from fleet.config import load_settings
    from fleet.services.broker import server_password

    services = build_services(load_settings(environ=server.env()), listen_status=False)
    try:
        return server_password(services.ctx.hasher)
    finally:
        services.close()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    os.environ.setdefault("FLEET_TEST_TIME_SCALE", "6")  # broker and server start with 100k
    results: dict[str, Any] = {
        "bench": "enrollment_curve",
        "auth": args.auth,
        "database": args.database,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
        "checkpoints": [],
    }
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-enroll-"))
    with population.database_url(args.database, args.postgres_url) as db_url:
        rig = Rig(args, work, db_url)
        try:
            secret = rig.first_start()
            url = rig.server.env().get("FLEET_DATABASE_URL") or (
                f"sqlite:///{rig.server.data_dir / 'fleet.db'}"
            )
            engine = create_engine(url)
            for checkpoint in args.checkpoints:
                row = _checkpoint(args, rig, engine, secret, checkpoint, work)
                results["checkpoints"].append(row)
                print(_row_line(row), flush=True)
                if row["enrolled"] == 0:
                    break
            engine.dispose()
        finally:
            rig.stop()
    rates = [r["rate"] for r in results["checkpoints"] if r["enrolled"]]
    if rates:
        spread = (max(rates) - min(rates)) / max(rates)
        results["spread"] = {
            "min_rate": min(rates),
            "max_rate": max(rates),
            "spread": round(spread, 3),
            "flat_within_20_percent": spread <= FLAT_WITHIN,
            "last_over_first": round(rates[-1] / rates[0], 3),
        }
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def _checkpoint(
    args: argparse.Namespace, rig: Rig, engine: Any, secret: str, checkpoint: int, work: Path
) -> dict[str, Any]:
    now = datetime.now(UTC)
    refill = rig.refill(engine, checkpoint, now)
    before = fleet_fill.count_devices(engine)
    tag = f"c{checkpoint}-"
    warm = enroll_batch(
        rig.server.url, secret, [f"{tag}w{i}" for i in range(WARM_UP)], 1, args.max_seconds
    )
    if warm["enrolled"] == 0:
        raise SystemExit(f"the first enrollments failed: {warm['errors']}")
    pgid = rig.server.pid or 0
    spies = []
    if args.profile and profiling.py_spy_available():
        for pid in worker_pids(pgid, pgid):
            out = work / f"py-spy-{checkpoint}-{pid}.txt"
            spies.append((out, profiling.start_py_spy(pid, out, int(args.max_seconds) + 60)))
    server0, broker0 = process_group_cpu_s(pgid), proc_cpu_s(rig.broker_pid)
    ids = [f"{tag}{i:06d}" for i in range(args.batch)]
    done = enroll_batch(rig.server.url, secret, ids, args.clients, args.max_seconds)
    server_cpu = process_group_cpu_s(pgid) - server0
    broker_cpu = proc_cpu_s(rig.broker_pid) - broker0
    for _, spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    lat = done["latencies"]
    n = done["enrolled"]
    row: dict[str, Any] = {
        "checkpoint": checkpoint,
        "devices_before": before,
        **refill,
        "batch": args.batch,
        "enrolled": n,
        "seconds": round(done["seconds"], 2),
        "rate": round(n / done["seconds"], 1) if n else 0.0,
        "p50_ms": round(_percentile(lat, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(lat, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else 0.0,
        "server_cpu_ms_per_enrollment": round(server_cpu / n * 1000, 2) if n else None,
        "broker_cpu_ms_per_enrollment": round(broker_cpu / n * 1000, 2) if n else None,
        "errors": done["error_count"],
        "error_samples": done["errors"],
        "load_average": os.getloadavg(),
    }
    if spies:
        row["profile"] = profiling.summarise_raw([p for p, _ in spies])
    return row


def _row_line(row: dict[str, Any]) -> str:
    return (
        f"{row['devices_before']:>9,}{row['enrolled']:>9,}{row['seconds']:>9.1f}"
        f"{row['rate']:>9.1f}{row['p50_ms']:>9.0f}{row['p99_ms']:>9.0f}"
        f"{row['server_cpu_ms_per_enrollment'] or 0:>12.1f}"
        f"{row['broker_cpu_ms_per_enrollment'] or 0:>12.2f}{row['errors']:>8}"
    )


HEADER = (
    f"{'enrolled':>9}{'batch':>9}{'s':>9}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'srv CPU ms':>12}{'mqtt CPU ms':>12}{'errors':>8}"
)


def table(results: dict[str, Any]) -> str:
    lines = [
        "",
        f"Enrollment curve, --auth {results['auth']} on {results['database']} (commit "
        f"{results['commit']}, {results['machine']['cpus']} CPUs, load "
        f"{results['machine']['load_average_at_start'][0]:.1f} at start; "
        f"{results['settings']['clients']} client processes, {results['settings']['workers']} "
        "workers; CPU per enrollment)",
        HEADER,
        *(_row_line(r) for r in results["checkpoints"]),
    ]
    spread = results.get("spread")
    if spread:
        verdict = "flat" if spread["flat_within_20_percent"] else "NOT flat"
        lines.append(
            f"spread {spread['spread']:.0%} ({spread['min_rate']:.1f} to {spread['max_rate']:.1f}"
            f"/s; last/first {spread['last_over_first']:.2f}): {verdict} within 20 %"
        )
    for r in results["checkpoints"]:
        if "profile" in r:
            parts = ", ".join(f"{k} {v:.0%}" for k, v in list(r["profile"]["parts"].items())[:5])
            lines.append(f"  workers at {r['devices_before']:,}: {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(HEADER, flush=True)
    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.output / f"enrollment_curve-{args.auth}-{args.database}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults: {path}")
    return 1 if any(r["errors"] for r in results["checkpoints"]) else 0


if __name__ == "__main__":
    sys.exit(main())
