"""Benchmark: one page of ``GET /api/v1/tokens`` and ``fleet token list`` over 100,000 tokens.

From the repository root::

    .venv/bin/python -m bench.list_pages                          # SQLite (the default)
    .venv/bin/python -m bench.list_pages --database postgresql    # 127.0.0.1:5432, db test

The tokens are bulk-inserted with Core statements (``bench/population.py``), then:

- **server time of one page**: the real Flask app in-process (API key check, the service's
  two queries, JSON), ``GET /api/v1/tokens?limit=N&cursor=C`` at cursors spread over the
  whole list, so deep pages are measured as often as the first one; median and p99;
- **the same page over HTTP** from ``fleet serve --workers 2`` on loopback (gunicorn, a new
  connection per request as its sync workers do);
- **``fleet token list``** (the CLI as a user runs it, a subprocess) over every row, JSON and
  TSV: time to the first row on stdout, total wall time, rows printed, the CLI's peak RSS.

Results are printed and written as JSON to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select, text

from bench import population
from bench.server import HTTP_TIMEOUT_S, REPO_ROOT, Server
from bench.token_endpoint import DEFAULT_POSTGRES_URL
from fleet.app import create_app
from fleet.bootstrap import build_services
from fleet.config import load_settings
from fleet.db.models import ScopeMap, Token
from fleet.services.tokens import TOKENS

RESULTS_DIR = REPO_ROOT / "bench" / "results"
FLEET = str(Path(sys.executable).with_name("fleet"))
CLI_TIMEOUT_S = 600.0
INIT_TIMEOUT_S = 120.0
READ_CHUNK = 1 << 16


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See bench/README.md for what is measured and how to read it.",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLEET_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database where a schema may be created and dropped [%(default)s]",
    )
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens [100000]")
    parser.add_argument("--limit", type=int, default=100, help="rows per measured page [100]")
    parser.add_argument("--samples", type=int, default=300, help="pages timed, each way [300]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--cli-runs", type=int, default=1, help="runs of each CLI format [1]")
    parser.add_argument("--seed", type=int, default=11, help="where the sampled pages start")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON results directory")
    return parser.parse_args(argv)


def stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {
        "samples": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(ms[-1], 2),
    }


def _cursors(services: Any, names: list[str], samples: int, seed: int) -> list[str | None]:
    """Cursors after random rows (and the first page), as a walk would have reached them."""
    rng = random.Random(seed)
    picks: list[str | None] = [None]
    picks += [services.tokens.cursors.encode(TOKENS, (rng.choice(names),)) for _ in range(samples)]
    return picks[:samples]


def _page_url(limit: int, cursor: str | None) -> str:
    return f"/api/v1/tokens?limit={limit}" + (f"&cursor={cursor}" if cursor else "")


def _check_page(body: dict[str, Any], limit: int, *, first: bool) -> None:
    rows = body["value"]
    if first and len(rows) != limit:
        raise RuntimeError(f"the first page has {len(rows)} rows, expected {limit}")
    if any(len(t["credentials"]["passwords"]) != 1 for t in rows):
        raise RuntimeError("a bulk token lost its password in the list")


def _in_process(services: Any, key: str, urls: list[str], limit: int) -> dict[str, Any]:
    client = create_app(services.ctx.settings, services).test_client()
    headers = {"Authorization": f"Bearer {key}"}
    for url in urls[:20]:  # warm up
        client.get(url, headers=headers)
    times = []
    for url in urls:
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{url} answered {answer.status_code}: {answer.get_data()[:300]!r}")
        _check_page(answer.get_json(), limit, first="cursor=" not in url)
    return stats(times)


def _over_http(server: Server, key: str, urls: list[str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    for url in urls[:20]:
        requests.get(server.url + url, headers=headers, timeout=HTTP_TIMEOUT_S)
    times = []
    for url in urls:
        started = time.perf_counter()
        answer = requests.get(server.url + url, headers=headers, timeout=HTTP_TIMEOUT_S)
        times.append(time.perf_counter() - started)
        answer.raise_for_status()
    return stats(times)


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``), 0 once it has gone.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the parent's high-water mark over fork and
    exec, so a child forked from this (large) process would report this process's size.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cli_list(env: dict[str, str], output: str, expected: int) -> dict[str, Any]:
    """``fleet token list -o OUTPUT``: time to the first byte and to the end, rows printed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [FLEET, "token", "list", "--output", output],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    first_byte: float | None = None
    chunks: list[bytes] = []
    peak_kb = 0
    while chunk := process.stdout.read1(READ_CHUNK):  # type: ignore[attr-defined]
        if first_byte is None:
            first_byte = time.perf_counter() - started
        chunks.append(chunk)
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
    stderr = process.communicate(timeout=CLI_TIMEOUT_S)[1]
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"fleet token list failed: {stderr.decode()[-500:]}")
    text = b"".join(chunks).decode()
    rows = len(json.loads(text)) if output == "json" else len(text.splitlines())
    if rows != expected:
        raise RuntimeError(f"fleet token list -o {output} printed {rows} rows, not {expected}")
    return {
        "output": output,
        "rows": rows,
        "bytes": len(text),
        "first_row_s": round(first_byte or total, 3),
        "total_s": round(total, 2),
        "rows_per_s": round(rows / total),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "database": args.database,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {"tokens": args.tokens, "limit": args.limit, "samples": args.samples},
    }
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp,
        population.database_url(args.database, args.postgres_url) as db_url,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env["FLEET_DATA_DIR"] = str(Path(tmp) / "data")
        if db_url:
            env["FLEET_DATABASE_URL"] = db_url
        subprocess.run(
            [FLEET, "init"], env=env, check=True, capture_output=True, timeout=INIT_TIMEOUT_S
        )
        _measure(args, env, Path(tmp), results)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def _measure(
    args: argparse.Namespace, env: dict[str, str], workdir: Path, results: dict[str, Any]
) -> None:
    services = build_services(load_settings(environ=env))
    try:
        engine = services.ctx.db.engine
        maps = ScopeMap.__table__  # type: ignore[attr-defined]
        with engine.connect() as conn:
            map_id = conn.execute(
                select(maps.c.id).where(maps.c.name == "_repositories_pull")
            ).scalar_one()
        fill_s = population.fill_tokens(engine, args.tokens, int(map_id))
        if engine.dialect.name == "postgresql":
            # What autovacuum does within a minute of a bulk load. Without statistics the
            # planner reads a page's passwords with a sequential scan (bench/README.md, "Paged
            # lists", says by how much).
            with engine.begin() as conn:
                conn.execute(text("ANALYZE tokens, token_passwords"))
        tokens = population.token_count(engine)
        print(f"  {tokens} tokens in the database (added in {fill_s:.1f} s)")
        results["fill_seconds"] = round(fill_s, 2)
        with engine.connect() as conn:
            names = list(conn.execute(select(Token.__table__.c.name)).scalars())  # type: ignore[attr-defined]
        _, key = services.api_keys.create("bench", actor="bench")
        urls = [
            _page_url(args.limit, c) for c in _cursors(services, names, args.samples, args.seed)
        ]
        results["page_in_process"] = _in_process(services, key, urls, args.limit)
        print(f"  one page of {args.limit}, in-process: {results['page_in_process']}")
        big = [_page_url(1000, c) for c in _cursors(services, names, args.samples // 5, args.seed)]
        results["page_of_1000_in_process"] = _in_process(services, key, big, 1000)
        print(f"  one page of 1000, in-process: {results['page_of_1000_in_process']}")

        server = Server(env, args.workers, workdir / "server.log")
        try:
            server.wait_healthy()
            results["page_over_http"] = _over_http(server, key, urls)
            print(f"  one page of {args.limit}, over HTTP: {results['page_over_http']}")
            cli_env = env | {"FLEET_URL": server.url, "FLEET_API_KEY": key}
            runs = []
            for _ in range(args.cli_runs):
                for output in ("json", "tsv"):
                    runs.append(cli_list(cli_env, output, tokens))
                    print(f"  fleet token list -o {output}: {runs[-1]}")
            results["cli"] = runs
        finally:
            server.stop()
    finally:
        services.ctx.db.dispose()


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['database']}: {results['settings']['tokens']} tokens",
        "| what | median | p99 |",
        "| --- | --- | --- |",
    ]
    for key, label in (
        ("page_in_process", f"one page of {results['settings']['limit']}, server (in-process)"),
        ("page_of_1000_in_process", "one page of 1000, server (in-process)"),
        ("page_over_http", f"one page of {results['settings']['limit']}, HTTP (gunicorn)"),
    ):
        row = results[key]
        lines.append(f"| {label} | {row['median_ms']} ms | {row['p99_ms']} ms |")
    for run_ in results["cli"]:
        lines.append(
            f"| fleet token list -o {run_['output']}: {run_['rows']} rows, "
            f"peak RSS {run_['peak_rss_mb']} MB | first row {run_['first_row_s']} s | "
            f"total {run_['total_s']} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(f"benchmarking paged lists on {args.database} ...")
    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.output / f"list_pages-{args.database}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
