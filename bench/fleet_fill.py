"""Enrolled devices in bulk: the rows an enrollment leaves, written without the server.

For each device, what ``POST /api/v1/enroll`` and its acknowledgement leave behind: a token
``dev-{id}`` on the group's scope map, its ``password1`` (a keyed-hash-shaped value that no
password matches), the device row (active, its public keys, version 1 acknowledged, the next
rotation due in ``rotate_in``), the acknowledged delivery of version 1 (its envelope dropped, as
the server drops it) and the ``device.enroll`` audit event. Primary keys are given explicitly
(after the largest already there) and PostgreSQL's sequences moved past them, so the server's
own inserts carry on after them.

PostgreSQL is written with ``COPY`` (about 20 times faster than row inserts), SQLite with one
``executemany`` per table and batch. Then the tables are analysed, as autovacuum would do
within a minute of such a load: without statistics the planner may scan whole tables.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select, text

from fleet.db.devices import ACTIVE, DELIVERY_ACKED, Delivery, Device, DeviceGroup
from fleet.db.models import ENABLED, AuditEvent, Token, TokenPassword
from fleet.domain.names import device_token_name
from fleet.mqtt import topics

BATCH = 10_000
HASH_HEX = 64  # a keyed hash is 64 hex characters

_tokens: Table = Token.__table__  # type: ignore[attr-defined]
_passwords: Table = TokenPassword.__table__  # type: ignore[attr-defined]
_devices: Table = Device.__table__  # type: ignore[attr-defined]
_deliveries: Table = Delivery.__table__  # type: ignore[attr-defined]
_audit: Table = AuditEvent.__table__  # type: ignore[attr-defined]
_groups: Table = DeviceGroup.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FilledDevice:
    device_id: str
    x25519_public: str  # base64 of the raw public key, as the enrollment request carries it
    ed25519_public: str


def group_ids(engine: Engine, group: str) -> tuple[int, int | None, int, int]:
    """(group id, its scope map id, password lifetime days, rotation window days)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                _groups.c.id,
                _groups.c.scope_map_id,
                _groups.c.password_lifetime_days,
                _groups.c.rotation_window_days,
            ).where(_groups.c.name == group)
        ).one()
    return int(row[0]), row[1], int(row[2]), int(row[3])


def _max_id(conn: Any, table: Table) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())


def _write(conn: Any, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(tuple(row[c] for c in columns))


def _move_sequences(conn: Any) -> None:
    if conn.dialect.name != "postgresql":
        return
    for table in (_tokens, _passwords, _devices, _deliveries, _audit):
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f'(SELECT coalesce(max(id), 1) FROM "{table.name}"))'
            )
        )


def fill_devices(
    engine: Engine,
    group: str,
    devices: Iterable[FilledDevice],
    *,
    now: datetime,
    rotate_in: timedelta = timedelta(days=13),
) -> tuple[int, float]:
    """Write enrolled devices of ``group``; returns (devices written, seconds)."""
    started = time.perf_counter()
    group_id, scope_map_id, lifetime_days, _ = group_ids(engine, group)
    expiry = now + timedelta(days=lifetime_days)
    written = 0
    batch: list[FilledDevice] = []

    def flush() -> None:
        nonlocal written
        with engine.begin() as conn:
            _batch(conn, batch, group, group_id, scope_map_id, now, expiry, rotate_in)
            _move_sequences(conn)
        written += len(batch)
        batch.clear()

    for device in devices:
        batch.append(device)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    analyse(engine)
    return written, time.perf_counter() - started


def _batch(
    conn: Any,
    batch: Sequence[FilledDevice],
    group: str,
    group_id: int,
    scope_map_id: int | None,
    now: datetime,
    expiry: datetime,
    rotate_in: timedelta,
) -> None:
    token0, password0, device0 = (_max_id(conn, t) for t in (_tokens, _passwords, _devices))
    delivery0, audit0 = _max_id(conn, _deliveries), _max_id(conn, _audit)
    tokens, passwords, devices, deliveries, events = [], [], [], [], []
    detail = json.dumps({"group": group, "status": ACTIVE, "via": "secret"}, sort_keys=True)
    for k, d in enumerate(batch, start=1):
        token_id, device_pk = token0 + k, device0 + k
        tokens.append(
            {
                "id": token_id,
                "name": device_token_name(d.device_id),
                "status": ENABLED,
                "scope_map_id": scope_map_id,
                "created_at": now,
                "updated_at": now,
            }
        )
        passwords.append(
            {
                "id": password0 + k,
                "token_id": token_id,
                "slot": "password1",
                "secret_hash": secrets.token_hex(HASH_HEX // 2),
                "created_at": now,
                "expiry": expiry,
            }
        )
        devices.append(
            {
                "id": device_pk,
                "device_id": d.device_id,
                "group_id": group_id,
                "token_id": token_id,
                "status": ACTIVE,
                "x25519_public": d.x25519_public,
                "ed25519_public": d.ed25519_public,
                "mqtt_username": d.device_id,
                "allow_reenroll": False,
                "last_version": 1,
                "acked_credentials_version": 1,
                "active_slot": "password1",
                "active_expiry": expiry,
                "rotate_due_at": now + rotate_in,
                "enrolled_at": now,
                "approved_at": now,
                "last_seen_at": now,
            }
        )
        deliveries.append(
            {
                "id": delivery0 + k,
                "device_pk": device_pk,
                "version": 1,
                "kind": "credentials",
                "topic": topics.credentials_topic(d.device_id),
                "envelope": None,
                "slot": "password1",
                "state": DELIVERY_ACKED,
                "created_at": now,
                "published_at": now,
                "acked_at": now,
                "attempts": 1,
                "next_attempt_at": now,
            }
        )
        events.append(
            {
                "id": audit0 + k,
                "at": now,
                "actor": f"device:{d.device_id}",
                "action": "device.enroll",
                "target": d.device_id,
                "detail": detail,
            }
        )
    for table, rows in (
        (_tokens, tokens),
        (_passwords, passwords),
        (_devices, devices),
        (_deliveries, deliveries),
        (_audit, events),
    ):
        _write(conn, table, rows)


def analyse(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def count_devices(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_devices)).scalar_one())
