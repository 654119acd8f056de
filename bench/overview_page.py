"""The dashboard's overview page at fleet scale: its server time, median and p99.

Fills a fresh database (a SQLite file, and a schema of its own on PostgreSQL) with
``--devices`` devices in three groups (90 % active, 5 % pending, 5 % disabled, expiries over
30 days, last seen over 3 days), three deliveries each (the first password, acknowledged a
month ago; a rotation this week, acknowledged or not; a command), a week of failed logins per
hour for 200 token names and 200 addresses, audit events and scheduler passes, all with Core
bulk inserts. Then it signs in with Flask's test client and times ``GET /ui/overview`` in
process: the whole request (session check, the overview's queries, the template, the SVG),
which is the server's share of what a browser waits for.

    .venv/bin/python -m bench.overview_page --devices 100000 --runs 60
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import Engine, insert, text

from bench import population
from fleet.app import create_app
from fleet.bootstrap import initialise
from fleet.config import load_settings
from fleet.db.devices import Delivery, Device
from fleet.db.models import AuditEvent, LoginFailureHourly, SchedulerRun
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.operators import OperatorService

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS1vZi1hdC1sZWFzdC0zMi1ieXRlcyE="
PASSWORD = "bench password, long enough"
BATCH = 5_000
FAILING_KEYS = 200


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


def fill(services: Services, devices: int, now: datetime) -> dict[str, int]:
    """Bulk rows for the overview; returns how many of each were written."""
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

    def device_rows() -> Iterator[dict[str, Any]]:
        for i in range(devices):
            roll = rng.random()
            status = "active" if roll < 0.9 else "pending" if roll < 0.95 else "disabled"
            yield {
                "id": i + 1,
                "device_id": f"bench-{i:06d}",
                "group_id": group_ids[i % 3],
                "status": status,
                "x25519_public": "x",
                "ed25519_public": "e",
                "mqtt_username": f"bench-{i:06d}",
                "allow_reenroll": False,
                "last_version": 3,
                "acked_credentials_version": 2,
                "active_slot": "password2",
                "active_expiry": now + timedelta(hours=rng.uniform(0, 30 * 24)),
                "enrolled_at": now - timedelta(days=40),
                "last_seen_at": now - timedelta(hours=rng.uniform(0, 72)),
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
                   "action": "device.credentials.expiring", "target": f"bench-{i:06d}",
                   "detail": "{}"}  # fmt: skip

    def run_rows() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            started = now - timedelta(minutes=i)
            yield {"started_at": started, "finished_at": started + timedelta(seconds=2),
                   "node": "bench-host:1", "summary": json.dumps({"rotated": i % 9}),
                   "error": None}  # fmt: skip

    written = {}
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


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(database_url: str, devices: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fleet-bench-overview-") as tmp:
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": Path(tmp) / "data",
                "database_url": database_url or f"sqlite:///{Path(tmp) / 'fleet.db'}",
                "secret_key": SECRET_KEY,
                "scheduler_enabled": "false",
            },
        )
        services = initialise(settings)
        try:
            now = datetime.now(UTC)
            started = time.perf_counter()
            written = fill(services, devices, now)
            fill_s = time.perf_counter() - started
            cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            services.operators = OperatorService(services.ctx, cheap)
            services.operators.create("bench", "viewer", PASSWORD, actor="bench")
            app = create_app(settings, services)
            client = app.test_client()
            page = client.get("/ui/sign-in").get_data(as_text=True)
            csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
            signed = client.post(
                "/ui/sign-in", data={"csrf_token": csrf, "name": "bench", "password": PASSWORD}
            )
            assert signed.status_code == 302, signed.status_code
            page_ms, service_ms = [], []
            for _ in range(3):  # warm the caches and the connection pool
                client.get("/ui/overview")
            for _ in range(runs):
                t = time.perf_counter()
                answer = client.get("/ui/overview")
                page_ms.append((time.perf_counter() - t) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET /ui/overview answered {answer.status_code}")
                t = time.perf_counter()
                view = services.overview.page()
                service_ms.append((time.perf_counter() - t) * 1000)
            return {
                "database": services.ctx.db.engine.dialect.name,
                "devices": devices,
                "rows": written,
                "fill_seconds": round(fill_s, 1),
                "runs": runs,
                "page_ms": {
                    "median": round(statistics.median(page_ms), 1),
                    "p99": round(_percentile(page_ms, 0.99), 1),
                },
                "service_ms": {
                    "median": round(statistics.median(service_ms), 1),
                    "p99": round(_percentile(service_ms, 0.99), 1),
                },
                "counters": dataclasses.asdict(view.counters),
                "page_bytes": len(answer.get_data()),
            }
        finally:
            services.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args(argv)
    for database in args.databases.split(","):
        if database == "postgresql":
            with population.postgres_schema(args.postgres_url) as url:
                result = measure(url, args.devices, args.runs)
        else:
            result = measure("", args.devices, args.runs)
        print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
