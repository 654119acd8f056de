"""A bulk job over a large group: time, devices per second and peak Python memory.

    .venv/bin/python -m bench.bulk_jobs                       # 100,000 devices, SQLite
    .venv/bin/python -m bench.bulk_jobs --devices 10000 --kind disable
    .venv/bin/python -m bench.bulk_jobs --postgres            # local PostgreSQL, own schema

Devices are bulk-inserted with Core statements (as ``bench/reconciler_pass.py`` does, never
seen: a disable waits for no acknowledgement). The job is the real one
(``BulkJobService.run``: pages by key, a transaction per batch, sealed envelopes, audit rows)
against a broker stand-in that accepts everything: the broker's own time is not measured here.
Peak memory is ``tracemalloc``'s during the job; it should not grow with the group's size.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from datetime import UTC, datetime

from sqlalchemy import update

from bench.reconciler_pass import bench_services, populate
from fleet.db.devices import Device
from fleet.services.bulk_jobs import BATCH_SIZE, BulkJobService


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--kind", choices=["rotate", "disable"], default="rotate")
    parser.add_argument("--batch", type=int, default=BATCH_SIZE)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with bench_services(args.postgres) as (services, broker):
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        populate(services, args.devices, now)
        with services.ctx.db.engine.begin() as conn:  # never seen: no wait for a wipe's ack
            conn.execute(update(Device.__table__).values(last_seen_at=None))  # type: ignore[attr-defined]
        print(f"populated {args.devices:,} devices in {time.perf_counter() - t0:.1f} s")
        jobs = BulkJobService(
            services.ctx, services.devices, services.delivery, batch_size=args.batch
        )
        job = jobs.start(args.kind, "bench", actor="bench")
        tracemalloc.start()
        started = time.perf_counter()
        end = jobs.run(job.id)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{args.kind} of {end.total:,} devices ({services.ctx.db.engine.dialect.name}, "
            f"batch {args.batch}): {end.state}, {end.done:,} done, {end.failed} failed in "
            f"{seconds:.1f} s ({end.done / seconds:,.0f}/s); peak Python memory "
            f"{peak / 2**20:.1f} MiB; published {broker.published:,}, logins cut "
            f"{broker.disabled:,}"
        )


if __name__ == "__main__":
    main()
