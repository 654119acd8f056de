"""How late another server learns of a credential change on PostgreSQL.

The token endpoint's per-process cache is dropped when a ``NOTIFY fleet_credentials`` arrives
(``fleet.services.credential_changes``). A writer's ``COMMIT`` returns once PostgreSQL has
signalled the listeners; this measures what is left: from the moment the writer's commit has
returned to the moment the notification can be read on a listening connection, the way the
endpoint reads it (a non-blocking ``consume_input``, polled). Run idle, then with every core
kept busy by spinning processes, as on a loaded server::

    .venv/bin/python -m bench.notify_latency [--samples 2000] [--postgres-url URL]

It prints percentiles in microseconds, and the share of changes already readable at the first
look (for those, the very next request after the commit sees them).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHANNEL = "fleet_bench_notify_latency"
# A notification that has not arrived after this long counts as lost: the run fails.
GIVE_UP_S = 5.0


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


@contextlib.contextmanager
def _busy_cores(count: int, seconds: float) -> Iterator[None]:
    stop_at = time.monotonic() + seconds
    workers = [multiprocessing.Process(target=_spin, args=(stop_at,)) for _ in range(count)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()


def measure(url: str, samples: int) -> tuple[list[float], int]:
    """Delays in microseconds, and how many were readable at the first look."""
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as writer,
    ):
        listener.execute(f"LISTEN {CHANNEL}")
        pgconn = listener.pgconn
        delays: list[float] = []
        at_once = 0
        for index in range(samples):
            writer.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(index)))
            committed = time.perf_counter()
            first = True
            while True:
                pgconn.consume_input()
                note = pgconn.notifies()
                if note is not None:
                    break
                first = False
                if time.perf_counter() - committed > GIVE_UP_S:
                    raise RuntimeError(f"notification {index} did not arrive in {GIVE_UP_S} s")
            delays.append((time.perf_counter() - committed) * 1e6)
            at_once += first
        return delays, at_once


def _report(label: str, delays: list[float], at_once: int) -> str:
    ordered = sorted(delays)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return (
        f"{label:28s} {len(delays):6d} {pct(50):8.1f} {pct(99):8.1f} {pct(99.9):9.1f} "
        f"{max(ordered):9.1f} {statistics.mean(delays):8.1f} {100 * at_once / len(delays):8.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="changes per run [2000]")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("FLEET_BENCH_POSTGRES_URL", DEFAULT_URL)
    )
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    header = (
        f"{'':28s} {'n':>6s} {'p50 us':>8s} {'p99 us':>8s} {'p99.9 us':>9s} {'max us':>9s} "
        f"{'mean us':>8s} {'at once':>9s}"
    )
    print("commit returned -> notification readable on another connection")
    print(header)
    delays, at_once = measure(args.postgres_url, args.samples)
    print(_report("idle", delays, at_once))
    with _busy_cores(cores, seconds=600):
        delays, at_once = measure(args.postgres_url, args.samples)
    print(_report(f"{cores} cores kept busy", delays, at_once))
    return 0


if __name__ == "__main__":
    sys.exit(main())
