"""One rotation of a whole fleet, to simulated devices on a real broker, until all acknowledge.

    .venv/bin/python -m bench.rotation_scale --devices 2000            # a quick look
    .venv/bin/python -m bench.rotation_scale --devices 19000 --profile # as many as fit here

The real parts: ``fleet serve`` (``--workers``, 2 by default) on PostgreSQL (a schema of its
own; ``--database sqlite`` for the default file), mosquitto 2.0 with dynamic security (the
shipped configuration). ``--devices`` devices are bulk-written as enrolled (``bench/fleet_fill.py``:
each its own X25519 key, token, password, acknowledged first delivery) and their logins written
into the broker's dynamic-security file before it starts (``bench/dynsec_file.py``: each its own
password, bound to its client id, its own role), plus a few devices enrolled over HTTP so each
gunicorn worker has connected to the broker (a worker subscribes to the status stream on its
first broker use). ``--processes`` processes of the asyncio client of ``bench/mqtt_lite.py``
connect every device with its own client id and login, each from a source address of its own in
127.0.0.0/8, subscribe to its credentials topic and say hello as the agent does.

The clock starts with ``fleet scheduler run-once`` (the reconciler's pass, every device due):
each envelope is sealed, queued, published, received, opened with the device's key (signature
checked), acknowledged on the device's status topic, and the clock stops when the database has
every acknowledgement. Once a second the number of rotations sealed, published and acknowledged
is read from the database (the timeline in the JSON), and the CPU time of every part is read
from ``/proc``: server workers, the pass, mosquitto, the simulated devices. ``--profile`` runs
the pass under cProfile (sealing, hashing, publishing, SQL) and py-spy on each worker (status
handling). Results: a table and ``bench/results/rotation_scale-DB-TIME.json``.

mosquitto holds every connection in one process, so ``--devices`` is bounded by its open-file
limit (``RLIMIT_NOFILE``, inherited from this process, raised to its hard limit here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Engine, create_engine, text

from bench import dynsec_file, fleet_fill, population, profiling
from bench.delivery import enroll
from bench.load import process_group_cpu_s
from device_agent.protocol.keys import public_key_b64
from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GROUP = "bench-rotation"
DEVICE_PREFIX = "rot-"
# Descriptors mosquitto needs beyond one per device: listeners, the server's connections, files.
BROKER_SPARE_FDS = 200
MAX_DEVICES = 1_000_000
CONNECT_CONCURRENCY = 64  # per process: mosquitto's listen backlog is 100
CONNECT_ATTEMPTS = 6
SAMPLE_S = 0.5
WARM_ENROLLMENTS_PER_WORKER = 6
MAX_WARM_ENROLLMENTS = 200
SOURCE_NET = "127.0.{}.{}"


def _raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def proc_cpu_s(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """Every PostgreSQL process on the machine (other people's sessions too)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(entry.path, "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith("postgres"):
                total += proc_cpu_s(int(entry.name))
    return total


# -- the simulated devices ------------------------------------------------------------------


def simulate(
    devices: list[tuple[str, bytes, str, int]],
    host: str,
    port: int,
    server_key_b64: str,
    source: str,
    ready: Any,
    results: Any,
    stop: Any,
) -> None:
    """One process: connect its devices, open what arrives, acknowledge; report at the end."""
    raise_fd_limit()
    asyncio.run(_simulate(devices, host, port, server_key_b64, source, ready, results, stop))


async def _simulate(
    devices: list[tuple[str, bytes, str, int]],
    host: str,
    port: int,
    server_key_b64: str,
    source: str,
    ready: Any,
    results: Any,
    stop: Any,
) -> None:
    from bench import mqtt_lite
    from device_agent.protocol import topics
    from device_agent.protocol.envelope import EnvelopeError, StaleVersion, open_envelope
    from device_agent.protocol.keys import ed25519_public_from_b64

    server_key = ed25519_public_from_b64(server_key_b64)
    counts = {"opened": 0, "stale": 0, "refused": 0, "acked": 0, "connect_failures": 0}
    last_ack = [0.0]
    state: dict[str, tuple[X25519PrivateKey, list[int]]] = {}

    def on_message(device: mqtt_lite.Device, _topic: str, payload: bytes) -> None:
        if not payload:
            return
        key, held = state[device.username]
        try:
            opened = open_envelope(
                payload,
                device_id=device.username,
                device_private_key=key,
                server_public_key=server_key,
                last_version=held[0],
            )
        except StaleVersion:  # a copy of what it holds (retained, or published again)
            counts["stale"] += 1
            return
        except EnvelopeError:  # a bad signature, another device's, unreadable
            counts["refused"] += 1
            return
        counts["opened"] += 1
        held[0] = opened.version
        ack = {"type": "ack", "kind": "credentials", "version": opened.version}
        device.publish(topics.status_topic(device.username), json.dumps(ack).encode())
        counts["acked"] += 1
        last_ack[0] = time.time()

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    live: list[mqtt_lite.Device] = []

    async def bring_up(device_id: str, key_raw: bytes, password: str, held: int) -> None:
        state[device_id] = (X25519PrivateKey.from_private_bytes(key_raw), [held])
        for attempt in range(CONNECT_ATTEMPTS):
            device = mqtt_lite.Device(
                client_id=topics.device_client_id(device_id),
                username=device_id,
                password=password,
                subscribe=topics.credentials_topic(device_id),
                on_message=on_message,
            )
            try:
                async with gate:
                    await mqtt_lite.connect(device, host, port, source=source)
            except (OSError, mqtt_lite.MqttError):
                counts["connect_failures"] += 1
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            hello = {"type": "hello", "versions": {"credentials": held}}
            device.publish(topics.status_topic(device_id), json.dumps(hello).encode())
            live.append(device)
            ready.put(1)
            return
        ready.put(0)

    await asyncio.gather(*(bring_up(*d) for d in devices))
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for device in live:
        device.disconnect()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        {
            **counts,
            "connected": len(live),
            "last_ack": last_ack[0],
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }
    )


# -- the fleet ------------------------------------------------------------------------------


def make_devices(count: int) -> list[tuple[str, X25519PrivateKey, str, str]]:
    """(device id, its X25519 key, its Ed25519 public key, its broker password) per device."""
    ed_public = public_key_b64(Ed25519PrivateKey.generate().public_key())
    width = len(str(count))
    return [
        (
            f"{DEVICE_PREFIX}{i:0{width}d}",
            X25519PrivateKey.generate(),
            ed_public,
            secrets.token_urlsafe(18),
        )
        for i in range(count)
    ]


def progress(engine: Engine) -> dict[str, int]:
    """Rotations (deliveries of version 2 and up) sealed, published, acknowledged."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), count(published_at), "
                "count(*) FILTER (WHERE state = 'acked') FROM deliveries WHERE version >= 2"
                if conn.dialect.name == "postgresql"
                else "SELECT count(*), count(published_at), "
                "sum(CASE WHEN state = 'acked' THEN 1 ELSE 0 END) FROM deliveries "
                "WHERE version >= 2"
            )
        ).one()
    return {"sealed": int(row[0]), "published": int(row[1]), "acked": int(row[2] or 0)}


def recorded_span(engine: Engine) -> tuple[datetime, datetime]:
    """When the first rotation was sealed and the last one acknowledged, as recorded."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT min(created_at), max(acked_at) FROM deliveries WHERE version >= 2")
        ).one()
    return _aware(row[0]), _aware(row[1])


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def server_connections(broker: Mosquitto) -> int:
    """The fleet-server logins connected to the broker so far (its log)."""
    return len(re.findall(r"u'fleet-server'", broker.log_text()))


def worker_pids(pgid: int, master: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != master:
            try:
                raw = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(raw[raw.rindex(")") + 2 :].split()[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See bench/README.md for what is measured and how to read it.",
    )
    parser.add_argument("--devices", type=int, default=2000, help="simulated devices [2000]")
    parser.add_argument("--processes", type=int, default=4, help="client processes [4]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLEET_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database where a schema may be created and dropped [%(default)s]",
    )
    parser.add_argument("--deadline", type=int, default=900, help="seconds for the rotation")
    parser.add_argument("--profile", action="store_true", help="cProfile the pass, py-spy workers")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON results directory")
    args = parser.parse_args(argv)
    if not 1 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be 1 to {MAX_DEVICES}")
    if not 1 <= args.processes <= 64:
        parser.error("--processes must be 1 to 64")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be 1 to 16")
    if not 10 <= args.deadline <= 3600:
        parser.error("--deadline must be 10 to 3600 s")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    limit = raise_fd_limit()
    warm = min(MAX_WARM_ENROLLMENTS, WARM_ENROLLMENTS_PER_WORKER * args.workers)
    if args.devices + warm + BROKER_SPARE_FDS > limit:
        raise SystemExit(
            f"mosquitto holds every connection in one process, and this machine lets a process "
            f"open {limit} files (RLIMIT_NOFILE hard limit; raising it needs CAP_SYS_RESOURCE): "
            f"at most {limit - warm - BROKER_SPARE_FDS} devices here"
        )
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-rotation-"))
    results: dict[str, Any] = {
        "bench": "rotation_scale",
        "database": args.database,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "nofile_limit": limit,
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    with population.database_url(args.database, args.postgres_url) as db_url:
        broker = Mosquitto()
        env = {**broker.fleet_env(), "FLEET_SCHEDULER_ENABLED": "false"}
        server = FleetServer(work / "server", env=env, database_url=db_url)
        try:
            _run(args, results, work, broker, server, warm)
        finally:
            server.stop()
            broker.cleanup()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def _run(
    args: argparse.Namespace,
    results: dict[str, Any],
    work: Path,
    broker: Mosquitto,
    server: FleetServer,
    warm: int,
) -> None:
    t0 = time.perf_counter()
    fleet = make_devices(args.devices)
    with ThreadPoolExecutor(2) as pool:
        hashes = list(pool.map(lambda d: dynsec_file.password_fields(d[3]), fleet))
    dynsec_file.add_devices(
        broker.dynsec_file, ((d[0], h) for d, h in zip(fleet, hashes, strict=True))
    )
    results["prepare_keys_logins_s"] = round(time.perf_counter() - t0, 2)
    broker.start()
    server.init()
    server.create_api_key()
    server.start(args.workers)
    secret = server.device_group(GROUP)
    url = server.env().get("FLEET_DATABASE_URL") or f"sqlite:///{server.data_dir / 'fleet.db'}"
    engine = create_engine(url)
    now = datetime.now(UTC)
    written, fill_s = fleet_fill.fill_devices(
        engine,
        GROUP,
        (fleet_fill.FilledDevice(d[0], public_key_b64(d[1].public_key()), d[2]) for d in fleet),
        now=now,
    )
    results["fill"] = {"devices": written, "seconds": round(fill_s, 2)}
    print(f"filled {written} devices in {fill_s:.1f} s; broker holds their logins")

    # Real enrollments until every worker has used the broker (and so hears status).
    enrolled: list[dict[str, Any]] = []
    for i in range(warm):
        enrolled.append(enroll(server.url, secret, f"warm-{i:04d}"))
        if server_connections(broker) >= args.workers and i + 1 >= args.workers:
            break
    results["warm_enrollments"] = len(enrolled)
    server_key = enrolled[0]["enrollment"]["serverSigningKey"]
    devices = [(d[0], _raw(d[1]), d[3], 1) for d in fleet] + [
        (e["id"], bytes.fromhex(e["key"]), e["enrollment"]["mqtt"]["password"], 0) for e in enrolled
    ]
    host, port = broker.host, broker.port
    ready, answers, stop = mp.Queue(), mp.Queue(), mp.Event()
    share = -(-len(devices) // args.processes)
    procs = [
        mp.Process(
            target=simulate,
            args=(
                devices[i * share : (i + 1) * share],
                host,
                port,
                server_key,
                SOURCE_NET.format(1 + i // 250, 2 + i % 250),
                ready,
                answers,
                stop,
            ),
            daemon=True,
        )
        for i in range(args.processes)
    ]
    t_connect = time.perf_counter()
    for proc in procs:
        proc.start()
    up = sum(ready.get(timeout=args.deadline) for _ in devices)
    connect_s = time.perf_counter() - t_connect
    results["connect"] = {"devices": len(devices), "connected": up, "seconds": round(connect_s, 2)}
    print(f"{up} of {len(devices)} devices connected in {connect_s:.1f} s")
    if up != len(devices):
        stop.set()
        raise SystemExit("not every device connected: see the broker's log")
    deadline = time.monotonic() + args.deadline
    _settle(engine, len(enrolled), deadline)
    time.sleep(2)  # the hellos of the last devices, handled

    with engine.begin() as conn:
        conn.execute(text("UPDATE devices SET rotate_due_at = :t"), {"t": now - timedelta(days=1)})
    pgid = server.pid or 0
    workers = worker_pids(pgid, pgid)
    cpu0 = _cpu(pgid, broker)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    spies = []
    if args.profile and profiling.py_spy_available():
        for pid in workers:
            out = work / f"py-spy-{pid}.txt"
            spies.append((out, profiling.start_py_spy(pid, out, args.deadline)))
    command = [server_cli(), "scheduler", "run-once"]
    if args.profile:
        command = [sys.executable, "-m", "cProfile", "-o", str(work / "pass.prof"), *command]
    started = time.perf_counter()
    pass_proc = subprocess.Popen(
        command,
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timeline, pass_s = [], None
    target = len(devices)
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_S)
        if pass_s is None and pass_proc.poll() is not None:
            pass_s = time.perf_counter() - started
        seen = progress(engine)
        timeline.append({"t": round(time.perf_counter() - started, 2), **seen})
        if seen["acked"] >= target:
            break
    total_s = time.perf_counter() - started
    out, err = pass_proc.communicate(timeout=args.deadline)
    pass_s = pass_s or time.perf_counter() - started
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = _cpu(pgid, broker)
    for _, spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
        spy.wait(60)
    stop.set()
    device_reports = [answers.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    final = progress(engine)
    first_sealed, last_acked = recorded_span(engine)
    span = (last_acked - first_sealed).total_seconds()
    pass_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    dropped = broker.log_text().count("Outgoing messages are being dropped")
    results["rotation"] = {
        "broker_dropped_outgoing_lines": dropped,
        "devices": target,
        "acknowledged": final["acked"],
        "seconds": round(total_s, 2),
        "envelopes_per_s": round(final["acked"] / total_s, 1),
        "pass_seconds": round(pass_s, 2),
        "server_recorded_s": round(span, 3),
        "server_recorded_per_s": round(final["acked"] / span, 1) if span > 0 else None,
        "pass_output": out.decode(errors="replace")[-2000:],
        "pass_errors": err.decode(errors="replace")[-2000:] if pass_proc.returncode else "",
        "cpu_s": {
            "server_workers": round(cpu1["server"] - cpu0["server"], 2),
            "reconciler_pass": round(pass_cpu, 2),
            "mosquitto": round(cpu1["mosquitto"] - cpu0["mosquitto"], 2),
            "simulated_devices": round(sum(r["cpu_s"] for r in device_reports), 2),
            "postgresql_all_processes": round(cpu1["postgres"] - cpu0["postgres"], 2),
        },
        "devices_report": {
            k: sum(r[k] for r in device_reports)
            for k in ("opened", "stale", "refused", "acked", "connect_failures", "connected")
        },
        "timeline": timeline,
    }
    if args.profile:
        results["profile"] = {
            "pass": profiling.summarise_pstats(work / "pass.prof")
            if (work / "pass.prof").exists()
            else {},
            "workers": profiling.summarise_raw([p for p, _ in spies]),
        }
    engine.dispose()


def _settle(engine: Engine, enrolled: int, deadline: float) -> None:
    """Wait until the enrolled devices' first deliveries are acknowledged."""
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM deliveries WHERE state = 'pending'")
            ).scalar_one()
        if not left:
            return
        time.sleep(SAMPLE_S)
    raise SystemExit(f"{enrolled} enrolled devices did not acknowledge their first delivery")


def _cpu(pgid: int, broker: Mosquitto) -> dict[str, float]:
    return {
        "server": process_group_cpu_s(pgid),
        "mosquitto": proc_cpu_s(broker.pid or 0),
        "postgres": postgres_cpu_s(),
    }


def server_cli() -> str:
    return str(Path(sys.executable).with_name("fleet"))


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def table(results: dict[str, Any]) -> str:
    r = results["rotation"]
    cpu = r["cpu_s"]
    lines = [
        "",
        f"Rotation of {r['devices']:,} devices on {results['database']} "
        f"(commit {results['commit']}, {results['machine']['cpus']} CPUs, load "
        f"{results['machine']['load_average_at_start'][0]:.1f} at start)",
        f"  acknowledged {r['acknowledged']:,} in {r['seconds']:.1f} s: "
        f"{r['envelopes_per_s']:.0f} envelopes/s (the pass itself: {r['pass_seconds']:.1f} s)",
        f"  devices: connected {r['devices_report']['connected']:,}, opened "
        f"{r['devices_report']['opened']:,} (signature checked), refused "
        f"{r['devices_report']['refused']}, stale copies {r['devices_report']['stale']}",
        f"  recorded by the server: first envelope sealed to last acknowledgement "
        f"{r['server_recorded_s']:.2f} s: {r['server_recorded_per_s']:.0f} envelopes/s",
        "  CPU seconds during the rotation:",
    ]
    lines += [f"    {k:28}{v:>8.1f}" for k, v in cpu.items()]
    profile = results.get("profile")
    if profile:
        lines.append("  the pass under cProfile (cumulative s, overlapping):")
        lines += [f"    {k:48}{v:>8.2f}" for k, v in profile["pass"].items()]
        lines.append(f"  server workers (py-spy, {profile['workers']['samples']} samples):")
        lines += [f"    {k:48}{v:>8.1%}" for k, v in profile["workers"]["parts"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.output / f"rotation_scale-{args.database}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults: {path}")
    r = results["rotation"]
    return 0 if r["acknowledged"] >= r["devices"] else 1


if __name__ == "__main__":
    sys.exit(main())
