"""One reconciler pass over a large fleet: time and number of SQL statements.

    .venv/bin/python bench/reconciler_pass.py                    # 100,000 devices, SQLite
    .venv/bin/python bench/reconciler_pass.py --devices 10000 --due 0.01
    .venv/bin/python bench/reconciler_pass.py --postgres         # local PostgreSQL, own schema

Devices are bulk-inserted with Core statements; ``--due`` of them have a password inside its
rotation window. The pass runs the real reconciler (rotation: a new password, sealed, queued,
published), against a broker stand-in that acknowledges every publish: broker time is measured
in bench/README.md's delivery figures, not here. The same fleet is measured with several due
fractions side by side, to show the cost follows what is due, not the fleet's size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import create_engine, event, insert, text, update

from device_agent.protocol.keys import public_key_b64
from fleet.bootstrap import initialise
from fleet.config import load_settings
from fleet.db.devices import Device, DeviceGroup
from fleet.db.models import ScopeMap, Token, TokenPassword
from fleet.mqtt.publisher import Publication
from fleet.services import Services
from fleet.services.reconciler import Reconciler

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK = 10_000


class AcceptingBroker:
    """A broker that takes every publication and login change at once, and counts them."""

    device_url = "mqtt://bench:1883"

    def __init__(self) -> None:
        self.published = 0
        self.disabled = 0

    def publish(self, publications: Sequence[Publication]) -> None:
        self.published += len(publications)

    def disable_device(self, username: str) -> None:
        self.disabled += 1

    def close(self) -> None:
        pass


@contextlib.contextmanager
def bench_services(postgres: bool) -> Iterator[tuple[Services, AcceptingBroker]]:
    """Initialised services on SQLite in a temporary directory, or on a PostgreSQL schema of
    their own (dropped afterwards), with an :class:`AcceptingBroker`."""
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    schema = None
    url = f"sqlite:///{workdir / 'fleet.db'}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    if postgres:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    settings = load_settings(
        environ={},
        overrides={"data_dir": workdir, "database_url": url, "scheduler_enabled": "false"},
    )
    services = initialise(settings)
    broker = AcceptingBroker()
    services.broker = broker  # type: ignore[assignment]
    try:
        yield services, broker
    finally:
        services.close()
        if schema:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def populate(services, devices: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    engine = services.ctx.db.engine
    key = public_key_b64(X25519PrivateKey.generate().public_key())
    with engine.begin() as conn:
        map_id = conn.execute(text("SELECT id FROM scope_maps WHERE name='_repositories_pull'"))
        map_id = map_id.scalar()
        group_id = conn.execute(
            insert(DeviceGroup.__table__).values(  # type: ignore[attr-defined]
                name="bench",
                scope_map_id=map_id,
                password_lifetime_days=30,
                rotation_window_days=7,
                require_approval=False,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        expiry = now + timedelta(days=20)
        for start in range(0, devices, CHUNK):
            ids = range(start, min(devices, start + CHUNK))
            conn.execute(
                insert(Token.__table__),
                [  # type: ignore[attr-defined]
                    {
                        "name": f"dev-b{i:07d}",
                        "status": "enabled",
                        "scope_map_id": map_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            first = conn.execute(
                text("SELECT id FROM tokens WHERE name = :n"), {"n": f"dev-b{start:07d}"}
            ).scalar()
            conn.execute(
                insert(TokenPassword.__table__),
                [  # type: ignore[attr-defined]
                    {
                        "token_id": first + k,
                        "slot": "password1",
                        "secret_hash": "0" * 64,
                        "created_at": now,
                        "expiry": expiry,
                    }
                    for k in range(len(ids))
                ],
            )
            conn.execute(
                insert(Device.__table__),
                [  # type: ignore[attr-defined]
                    {
                        "device_id": f"b{i:07d}",
                        "group_id": group_id,
                        "token_id": first + k,
                        "status": "active",
                        "x25519_public": key,
                        "ed25519_public": key,
                        "mqtt_username": f"b{i:07d}",
                        "allow_reenroll": False,
                        "last_version": 1,
                        "acked_credentials_version": 1,
                        "active_slot": "password1",
                        "active_expiry": expiry,
                        "rotate_due_at": now + timedelta(days=13),
                        "enrolled_at": now,
                        "last_seen_at": now,
                    }
                    for k, i in enumerate(ids)
                ],
            )
    _ = ScopeMap


def make_due(services, count: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    table = Device.__table__  # type: ignore[attr-defined]
    with services.ctx.db.engine.begin() as conn:
        ids = [
            r[0]
            for r in conn.execute(text("SELECT id FROM devices ORDER BY id LIMIT :n"), {"n": count})
        ]
        if ids:
            conn.execute(
                update(table)
                .where(table.c.id.in_(ids))
                .values(rotate_due_at=now - timedelta(minutes=1))
            )


def measure_pass(services, reconciler: Reconciler) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    engine = services.ctx.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        reconciler.run_pass()
        elapsed = time.perf_counter() - started
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return elapsed, statements


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--due", type=float, nargs="+", default=[0.0, 0.001, 0.01])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("bench/results/reconciler_pass.json"))
    args = parser.parse_args()
    with bench_services(args.postgres) as (services, broker):
        _run(args, services, broker)


def _run(args: argparse.Namespace, services: Services, broker: AcceptingBroker) -> None:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    populate(services, args.devices, now)
    print(
        f"populated {args.devices:,} devices in {time.perf_counter() - t0:.1f} s "
        f"({services.ctx.db.engine.dialect.name})"
    )
    reconciler = Reconciler(services.ctx, services.devices, services.delivery)
    rows = []
    for fraction in args.due:
        due = int(args.devices * fraction)
        make_due(services, due, now)
        seconds, statements = measure_pass(services, reconciler)
        rows.append(
            {
                "devices": args.devices,
                "due": due,
                "seconds": round(seconds, 3),
                "statements": statements,
                "published": broker.published,
            }
        )
        broker.published = 0
        print(f"  due {due:>6,}: pass {seconds:6.3f} s, {statements:5,} SQL statements")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"database": services.ctx.db.engine.dialect.name, "at": now.isoformat(), "rows": rows},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
