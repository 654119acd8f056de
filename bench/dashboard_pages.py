"""The dashboard at fleet scale: server time of its pages and of the API's lists, median and p99.

Fills a fresh database (a SQLite file, and a schema of its own on PostgreSQL) with ``--tokens``
tokens (``bench/population.py``) and ``--devices`` devices, each on a token of its own, in three
groups (90 % active, 5 % pending, 5 % disabled, expiries over 30 days, last seen over 3 days),
three deliveries each (the first password, acknowledged a month ago; a rotation this week,
acknowledged or not; a command), a week of failed logins per hour for 200 token names and 200
addresses, audit events and scheduler passes, all with Core bulk inserts. Then a viewer signs in
with Flask's test client and every page below is timed in process: the whole request (session or
API key check, the queries, the template), which is the server's share of what a client waits
for. The SQL statements of each request are counted and the slowest one is kept with its plan
(``EXPLAIN ANALYZE`` on PostgreSQL, run once after the timing), so a page that misses its
target says which query to look at and what the planner did with it. Last, ``fleet token
list`` (the CLI, a subprocess, against ``fleet serve``) prints every token: time to its first
line and in all.

    .venv/bin/python -m bench.dashboard_pages                      # 100,000 each, both databases
    .venv/bin/python -m bench.dashboard_pages --databases postgresql --runs 100

Targets (issue 11): every dashboard page under 300 ms at p99, an API page under 100 ms at p99.
Results are printed as a table and written as JSON to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, insert, select, text

from bench import population
from bench.list_pages import FLEET, INIT_TIMEOUT_S, RESULTS_DIR, cli_list, stats
from bench.server import Server
from bench.token_endpoint import DEFAULT_POSTGRES_URL
from fleet.app import create_app
from fleet.bootstrap import build_services
from fleet.config import load_settings
from fleet.db.devices import Delivery, Device
from fleet.db.models import AuditEvent, LoginFailureHourly, SchedulerRun, Token
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.device_list import DATED, DeviceQuery
from fleet.services.operators import OperatorService
from fleet.services.tokens import TOKENS

PASSWORD = "bench password, long enough"
BATCH = 5_000
FAILING_KEYS = 200
PAGE_TARGET_MS = 300.0  # p99 of a dashboard page (issue 11)
API_TARGET_MS = 100.0  # p99 of one API page of 100
API_LIMIT = 100
WARM_UP = 3
MAX_DEVICES = 1_000_000  # a bound on what one run writes
NEXT_LINK = re.compile(r'<a\b[^>]*href="([^"]*[?&]cursor=[^"]+)"[^>]*>\s*Next\b')


def _table(model: Any) -> Any:
    return model.__table__


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def device_id(i: int) -> str:
    return f"bench-{i:06d}"


def fill(services: Services, devices: int, tokens: int, now: datetime) -> dict[str, int]:
    """Bulk rows for the dashboard; returns how many of each were written. The first
    ``devices`` tokens are the devices' own (a device page and the list show its name)."""
    rng = random.Random(7)
    services.scope_maps.create(
        "bench-read", [RepositoryActions("edge/*", ("content/read",))], actor="bench"
    )
    services.groups.create("bench-a", scope_map="bench-read", inactivity_limit_days=2, actor="b")
    services.groups.create("bench-b", scope_map="bench-read", inactivity_limit_days=7, actor="b")
    services.groups.create("bench-c", scope_map="bench-read", actor="b")
    engine: Engine = services.ctx.db.engine
    with engine.connect() as conn:
        group_ids = [r[0] for r in conn.execute(text("SELECT id FROM device_groups ORDER BY id"))]
        map_id = conn.execute(text("SELECT id FROM scope_maps WHERE name = 'bench-read'")).scalar()
    population.fill_tokens(engine, tokens, int(map_id))
    tokens_table = _table(Token)
    with engine.connect() as conn:
        token_ids = list(
            conn.execute(
                select(tokens_table.c.id)
                .where(tokens_table.c.name.like(f"{population.BULK_PREFIX}%"))
                .order_by(tokens_table.c.id)
                .limit(devices)
            ).scalars()
        )

    def device_rows() -> Iterator[dict[str, Any]]:
        for i in range(devices):
            roll = rng.random()
            status = "active" if roll < 0.9 else "pending" if roll < 0.95 else "disabled"
            pulled = now - timedelta(hours=rng.uniform(0, 24))
            yield {
                "id": i + 1,
                "device_id": device_id(i),
                "group_id": group_ids[i % 3],
                "token_id": token_ids[i] if i < len(token_ids) else None,
                "status": status,
                "x25519_public": "x",
                "ed25519_public": "e",
                "mqtt_username": device_id(i),
                "allow_reenroll": False,
                "last_version": 3,
                "acked_credentials_version": 2,
                "active_slot": "password2",
                "active_expiry": now + timedelta(hours=rng.uniform(0, 30 * 24)),
                "enrolled_at": now - timedelta(days=40, minutes=rng.uniform(0, 60 * 24 * 30)),
                "last_seen_at": now - timedelta(hours=rng.uniform(0, 72)),
                "last_pull_at": pulled,
                "last_pull_ok": rng.random() < 0.97,
            }

    def delivery_rows() -> Iterator[dict[str, Any]]:
        for i in range(devices):
            pk = i + 1
            month_ago = now - timedelta(days=30, minutes=i % 600)
            rotated = now - timedelta(hours=rng.uniform(0, 7 * 24))
            pending = rng.random() < 0.02
            common = {"device_pk": pk, "envelope": None, "attempts": 1, "slot": None}
            yield {**common, "version": 1, "kind": "credentials", "topic": "t",
                   "state": "acked", "created_at": month_ago, "acked_at": month_ago}  # fmt: skip
            yield {**common, "version": 2, "kind": "credentials", "topic": "t",
                   "state": "pending" if pending else "acked", "created_at": rotated,
                   "acked_at": None if pending else rotated + timedelta(seconds=3)}  # fmt: skip
            yield {**common, "version": 3, "kind": "command", "topic": "c",
                   "state": "acked", "created_at": rotated, "acked_at": rotated}  # fmt: skip

    def failure_rows() -> Iterator[dict[str, Any]]:
        first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=7 * 24)
        for h in range(7 * 24 + 1):
            hour = first + timedelta(hours=h)
            for k in range(FAILING_KEYS):
                yield {"hour": hour, "kind": "token", "key": f"bench-{k:06d}", "count": k % 7 + 1}
                yield {"hour": hour, "kind": "address", "key": f"10.1.{k // 250}.{k % 250}",
                       "count": k % 5 + 1}  # fmt: skip

    def audit_rows() -> Iterator[dict[str, Any]]:
        for i in range(devices):
            yield {"at": now - timedelta(minutes=i), "actor": "scheduler",
                   "action": "device.credentials.expiring", "target": device_id(i),
                   "detail": "{}"}  # fmt: skip

    def run_rows() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            started = now - timedelta(minutes=i)
            yield {"started_at": started, "finished_at": started + timedelta(seconds=2),
                   "node": "bench-host:1", "summary": json.dumps({"rotated": i % 9}),
                   "error": None}  # fmt: skip

    written = {"tokens": population.token_count(engine)}
    for name, model, rows in (
        ("devices", Device, device_rows()),
        ("deliveries", Delivery, delivery_rows()),
        ("login_failures_hourly", LoginFailureHourly, failure_rows()),
        ("audit_events", AuditEvent, audit_rows()),
        ("scheduler_runs", SchedulerRun, run_rows()),
    ):
        count = 0
        for batch in _batches(rows):
            with engine.begin() as conn:
                conn.execute(insert(_table(model)), batch)
            count += len(batch)
        written[name] = count
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('devices_id_seq', (SELECT max(id) FROM devices))"))
    # What autovacuum does to a table that has settled: statistics and the visibility map.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    return written


Statement = tuple[float, str, Any]  # seconds, SQL, its parameters


class Statements:
    """Every SQL statement the engine runs while ``recording``: how many, and the slowest."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.recording = False
        self.seen: list[Statement] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cursor: Any, _sql: str, _params: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if self.recording:
            took = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
            self.seen.append((took, sql, params))

    def start(self) -> None:
        self.seen, self.recording = [], True

    def stop(self) -> list[Statement]:
        self.recording = False
        return self.seen

    def plan(self, sql: str, params: Any) -> list[str]:
        """The statement's plan as run now: ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL,
        ``EXPLAIN QUERY PLAN`` on SQLite."""
        postgres = self.engine.dialect.name == "postgresql"
        explain = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(explain + sql, params)
            rows = cursor.fetchall()
            raw.rollback()
        finally:
            raw.close()
        return [str(r[0]) if postgres else str(r[-1]) for r in rows]


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "page" or "api"
    urls: list[str]  # one per run, cycled

    @property
    def target_ms(self) -> float:
        return PAGE_TARGET_MS if self.kind == "page" else API_TARGET_MS


def _time(client: FlaskClient, statements: Statements, target: Target, runs: int,
          headers: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """``runs`` requests of ``target`` after a warm-up; an error answer stops the row."""
    if not target.urls:
        return {"error": "no URL to time (the page before it has no Next link)"}
    for url in target.urls[:WARM_UP]:
        client.get(url, headers=headers)
    times, counts = [], []
    slowest: Statement = (0.0, "", None)
    body = b""
    for i in range(runs):
        url = target.urls[i % len(target.urls)]
        statements.start()
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        times.append(time.perf_counter() - started)
        seen = statements.stop()
        if answer.status_code != 200:
            return {"error": f"GET {url} answered {answer.status_code}"}
        counts.append(len(seen))
        slowest = max([slowest, *seen], key=lambda seen: seen[0])
        body = answer.get_data()
    figures = stats(times)
    return {
        **figures,
        "url": target.urls[0],
        "target_p99_ms": target.target_ms,
        "ok": figures["p99_ms"] < target.target_ms,
        "statements": sorted(set(counts)),
        "slowest_statement_ms": round(slowest[0] * 1000, 2),
        "slowest_statement": " ".join(slowest[1].split())[:2000],
        "slowest_statement_plan": statements.plan(slowest[1], slowest[2]) if slowest[1] else [],
        "bytes": len(body),
    }


def _sign_in(client: FlaskClient) -> None:
    page = client.get("/ui/sign-in").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    signed = client.post(
        "/ui/sign-in", data={"csrf_token": csrf, "name": "bench", "password": PASSWORD}
    )
    if signed.status_code != 302:
        raise RuntimeError(f"sign-in answered {signed.status_code}")


def _next_link(client: FlaskClient, url: str) -> str | None:
    """The href of the page's "Next" link, as a browser would follow it."""
    found = NEXT_LINK.search(client.get(url).get_data(as_text=True))
    return html.unescape(found.group(1)) if found else None


def targets(services: Services, client: FlaskClient, devices: int, runs: int,
            seed: int) -> list[Target]:  # fmt: skip
    rng = random.Random(seed)
    some = [device_id(rng.randrange(devices)) for _ in range(runs)]
    prefixes = [d[:-2] for d in some]  # 100 devices each: bench-0123xx
    device_list = DeviceQuery().kind  # what GET /api/v1/devices pages through
    device_cursors = [services.devices.cursors.encode(device_list, (DATED, "", d)) for d in some]
    names = [f"{population.BULK_PREFIX}{rng.randrange(devices):06d}" for _ in range(runs)]
    token_cursors = [services.tokens.cursors.encode(TOKENS, (n,)) for n in names]
    pages = [
        ("overview", ["/ui/overview"]),
        ("devices: first page", ["/ui/devices"]),
        ("devices: id prefix (100 match)", [f"/ui/devices?q={p}" for p in prefixes]),
        ("devices: id prefix (10,000 match)", ["/ui/devices?q=bench-05"]),
        ("devices: expiring", ["/ui/devices?expiring=1"]),
        ("devices: not seen", ["/ui/devices?not_seen=1"]),
        ("devices: delivery pending", ["/ui/devices?pending=1"]),
        ("devices: status disabled", ["/ui/devices?status=disabled"]),
        ("devices: group", ["/ui/devices?group=bench-b"]),
        ("devices: sort last seen, newest", ["/ui/devices?sort=last_seen&dir=desc"]),
        ("devices: sort expiry", ["/ui/devices?sort=expiry"]),
        ("devices: sort enrolled, desc", ["/ui/devices?sort=enrolled&dir=desc"]),
        ("devices: group + status + sort",
         ["/ui/devices?group=bench-a&status=active&sort=last_seen"]),
        ("device page", [f"/ui/devices/{d}" for d in some]),
    ]  # fmt: skip
    later = []
    for name, first in (
        ("devices: later page (Next)", "/ui/devices"),
        ("devices: later page, sort last seen (Next)", "/ui/devices?sort=last_seen&dir=desc"),
    ):
        link = _next_link(client, first)
        later.append((name, [link] if link else []))  # no Next link: reported as a failure
    apis = [
        (f"API devices ?limit={API_LIMIT}", [f"/api/v1/devices?limit={API_LIMIT}"]),
        ("API devices, later page by cursor",
         [f"/api/v1/devices?limit={API_LIMIT}&cursor={c}" for c in device_cursors]),
        (f"API tokens ?limit={API_LIMIT}", [f"/api/v1/tokens?limit={API_LIMIT}"]),
        ("API tokens, later page by cursor",
         [f"/api/v1/tokens?limit={API_LIMIT}&cursor={c}" for c in token_cursors]),
    ]  # fmt: skip
    return [Target(n, "page", u) for n, u in pages + later] + [Target(n, "api", u) for n, u in apis]


def measure(database_url: str, devices: int, tokens: int, runs: int, seed: int,
            cli: bool) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fleet-bench-dashboard-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env |= {"FLEET_DATA_DIR": str(Path(tmp) / "data"), "FLEET_SCHEDULER_ENABLED": "false"}
        if database_url:
            env["FLEET_DATABASE_URL"] = database_url
        subprocess.run(
            [FLEET, "init"], env=env, check=True, capture_output=True, timeout=INIT_TIMEOUT_S
        )
        services = build_services(load_settings(environ=env))
        try:
            now = datetime.now(UTC)
            started = time.perf_counter()
            written = fill(services, devices, tokens, now)
            fill_s = time.perf_counter() - started
            print(f"  filled in {fill_s:.0f} s: {written}", flush=True)
            cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            services.operators = OperatorService(services.ctx, cheap)
            services.operators.create("bench", "viewer", PASSWORD, actor="bench")
            _, key = services.api_keys.create("bench", actor="bench")
            client = create_app(services.ctx.settings, services).test_client()
            _sign_in(client)
            statements = Statements(services.ctx.db.engine)
            rows = {}
            for target in targets(services, client, devices, runs, seed):
                headers = {"Authorization": f"Bearer {key}"} if target.kind == "api" else {}
                rows[target.name] = {"kind": target.kind} | _time(
                    client, statements, target, runs, headers
                )
                print(f"  {target.name}: {_row_text(rows[target.name])}", flush=True)
            result: dict[str, Any] = {
                "database": services.ctx.db.engine.dialect.name,
                "devices": devices,
                "tokens": written["tokens"],
                "rows": written,
                "fill_seconds": round(fill_s, 1),
                "runs": runs,
                "pages": rows,
            }
            if cli:
                server = Server(env, 2, Path(tmp) / "server.log")
                try:
                    server.wait_healthy()
                    cli_env = env | {"FLEET_URL": server.url, "FLEET_API_KEY": key}
                    result["cli"] = cli_list(cli_env, "tsv", written["tokens"])
                    print(f"  fleet token list -o tsv: {result['cli']}", flush=True)
                finally:
                    server.stop()
            return result
        finally:
            services.ctx.db.dispose()


def _row_text(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"FAIL ({row['error']})"
    verdict = "pass" if row["ok"] else "FAIL"
    return (
        f"median {row['median_ms']} ms, p99 {row['p99_ms']} ms (target {row['target_p99_ms']:g})"
        f" {verdict}; {'/'.join(map(str, row['statements']))} statements, slowest "
        f"{row['slowest_statement_ms']} ms"
    )


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['database']}: {result['devices']} devices, {result['tokens']} tokens, "
        f"{result['runs']} requests each",
        "| what | median | p99 | target (p99) | | statements | slowest statement |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["pages"].items():
        if "error" in row:
            lines.append(f"| {name} | | | | FAIL: {row['error']} | | |")
            continue
        lines.append(
            f"| {name} | {row['median_ms']} ms | {row['p99_ms']} ms | "
            f"< {row['target_p99_ms']:g} ms | {'pass' if row['ok'] else 'FAIL'} | "
            f"{'/'.join(map(str, row['statements']))} | {row['slowest_statement_ms']} ms |"
        )
    if "cli" in result:
        c = result["cli"]
        lines.append(
            f"| fleet token list -o tsv: {c['rows']} rows (all: "
            f"{'pass' if c['rows'] == result['tokens'] else 'FAIL'}), peak RSS "
            f"{c['peak_rss_mb']} MB | first line {c['first_row_s']} s | total {c['total_s']} s "
            "| streams | | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000, help="devices [100000]")
    parser.add_argument("--tokens", type=int, help="tokens [as many as devices]")
    parser.add_argument("--runs", type=int, default=100, help="requests timed per page [100]")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLEET_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database where a schema may be created and dropped [%(default)s]",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip `fleet token list`")
    parser.add_argument("--seed", type=int, default=11, help="which devices and cursors")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON results directory")
    args = parser.parse_args(argv)
    tokens = args.devices if args.tokens is None else args.tokens
    if not 1 <= args.devices <= MAX_DEVICES or not args.devices <= tokens <= MAX_DEVICES:
        parser.error(f"--devices from 1 to {MAX_DEVICES}, --tokens from --devices to that")
    if not 1 <= args.runs <= 10_000:
        parser.error("--runs from 1 to 10000")
    databases = args.databases.split(",")
    if not set(databases) <= {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite and/or postgresql")
    failed = False
    for database in databases:
        print(f"benchmarking the dashboard on {database} ...", flush=True)
        started = datetime.now(UTC)
        load = os.getloadavg()
        if database == "postgresql":
            with population.postgres_schema(args.postgres_url) as url:
                result = measure(url, args.devices, tokens, args.runs, args.seed, not args.no_cli)
        else:
            result = measure("", args.devices, tokens, args.runs, args.seed, not args.no_cli)
        result["started"] = started.isoformat(timespec="seconds")
        result["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load,
            "load_average_at_end": os.getloadavg(),
        }
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"dashboard_pages-{database}-{started:%Y%m%dT%H%M%SZ}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        print(f"\nresults: {path}", flush=True)
        failed |= any("error" in r or not r["ok"] for r in result["pages"].values())
        failed |= "cli" in result and result["cli"]["rows"] != result["tokens"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
