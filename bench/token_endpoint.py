"""Benchmark: the registry token endpoint under gunicorn on loopback, against a floor.

From the repository root (wrk must be installed: ``apt-get install -y wrk``)::

    .venv/bin/python -m bench.token_endpoint                          # SQLite (the default)
    .venv/bin/python -m bench.token_endpoint --database postgresql    # 127.0.0.1:5432, db test

One ``fleet serve --workers 2`` process (with the benchmark-only floor route of
``bench/floor_server.py``) answers both measured URLs, so the endpoint and its floor share the
app, the gunicorn settings and the machine's mood; their runs alternate:

- ``GET /oauth2/token?service=...&scope=repository:samples/hello-world:pull`` with HTTP Basic
  auth: credential look-up, scope evaluation, ES256 signing;
- ``GET /bench/floor-token`` with the same query string and header: the endpoint's own answer
  around a JWT signed once at start-up.

Then the endpoint as the database grows from 10 to 50,000 tokens (floor alongside), with a
500-entry scope map, and pure rule-evaluation time for 1 to 500 rules. Results are printed as
tables and written as JSON to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import requests
from sqlalchemy import select

from bench import evaluation, population, report
from bench.floor_server import FLOOR_PATH, FLOOR_REPOSITORY, FLOOR_SCOPE
from bench.load import wrk_available
from bench.measure import Target, compare
from bench.server import HTTP_TIMEOUT_S, REPO_ROOT, Server
from fleet.bootstrap import build_services
from fleet.config import load_settings
from fleet.db.models import ScopeMap
from fleet.domain.rules import RepositoryActions
from fleet.services import Services

RESULTS_DIR = REPO_ROOT / "bench" / "results"
FLEET = str(Path(sys.executable).with_name("fleet"))
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TOKEN_NAME = "bench-token"
SCOPE_MAP_NAME = f"{TOKEN_NAME}-scope-map"
SERVICE = "fleet-registry"
LARGE_MAP_ENTRIES = 500
# One update's audit detail lists every entry it adds, in a VARCHAR(4096) that PostgreSQL
# enforces: 500 entries at once fail there (a product bug, reported), 40 fit.
AUDITABLE_RULES_PER_UPDATE = 40
CLI_TIMEOUT_S = 120.0
WARM_UP_S = 1


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
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections [4]")
    parser.add_argument(
        "--keepalive",
        type=int,
        default=None,
        help="fleet serve's FLEET_SERVE_KEEPALIVE (0: a connection per request) [its default]",
    )
    parser.add_argument(
        "--credential-cache",
        choices=("on", "off"),
        default=None,
        help="fleet serve's FLEET_CREDENTIAL_CACHE [its default, on]",
    )
    parser.add_argument("--pairs", type=int, default=8, help="floor/endpoint pairs, main [8]")
    parser.add_argument("--seconds", type=int, default=2, help="seconds per run, main [2]")
    parser.add_argument("--sweep-pairs", type=int, default=3, help="pairs per sweep row [3]")
    parser.add_argument("--sweep-seconds", type=int, default=1, help="seconds per sweep run [1]")
    parser.add_argument(
        "--token-counts",
        default="10,1000,10000,50000",
        help="tokens in the database, comma-separated [%(default)s]",
    )
    parser.add_argument(
        "--rule-counts",
        default=",".join(str(n) for n in evaluation.RULE_COUNTS),
        help="rules per map for the evaluation timing [%(default)s]",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON results directory")
    args = parser.parse_args(argv)
    args.token_counts = sorted(int(n) for n in args.token_counts.split(","))
    args.rule_counts = tuple(int(n) for n in args.rule_counts.split(","))
    return args


def _bench_token(env: dict[str, str]) -> tuple[str, int, Services]:
    """Create the measured token (one rule: content/read on the repository) in-process."""
    services = build_services(load_settings(environ=env))
    made = services.tokens.create(
        TOKEN_NAME,
        repositories=[RepositoryActions(FLOOR_REPOSITORY, ("content/read",))],
        actor="bench",
    )
    password = made.passwords[0].value
    if password is None:
        raise RuntimeError("the bench token was created without a password")
    maps = ScopeMap.__table__  # type: ignore[attr-defined]
    with services.ctx.db.engine.connect() as conn:
        map_id = conn.execute(select(maps.c.id).where(maps.c.name == SCOPE_MAP_NAME)).scalar_one()
    return password, int(map_id), services


def _check_answers(floor: Target, endpoint: Target) -> None:
    """Both URLs must answer 200 with a JWT granting pull on the repository, or nothing counts."""
    expected = [{"type": "repository", "name": FLOOR_REPOSITORY, "actions": ["pull"]}]
    for target in (floor, endpoint):
        answer = requests.get(target.url, headers=target.headers, timeout=HTTP_TIMEOUT_S)
        if answer.status_code != 200:
            raise RuntimeError(f"{target.url} answered {answer.status_code}: {answer.text}")
        claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
        if claims["access"] != expected:
            raise RuntimeError(f"{target.url} granted {claims['access']}, expected {expected}")


def _grow_scope_map(services: Services) -> int:
    """Bring the bench token's map to LARGE_MAP_ENTRIES entries without changing its grant."""
    rules = [
        RepositoryActions(str(rule.pattern), tuple(a.value for a in rule.actions))
        for rule in evaluation.rules_for(LARGE_MAP_ENTRIES - 1)
        if str(rule.pattern) != "*"
    ] + [RepositoryActions("other/filler", ("content/read",))]
    for start in range(0, len(rules), AUDITABLE_RULES_PER_UPDATE):
        batch = rules[start : start + AUDITABLE_RULES_PER_UPDATE]
        services.scope_maps.update(SCOPE_MAP_NAME, add=batch, actor="bench")
    return len(services.scope_maps.show(SCOPE_MAP_NAME).entries)


def _measure_server(
    args: argparse.Namespace, env: dict[str, str], workdir: Path, results: dict[str, Any]
) -> None:
    password, map_id, services = _bench_token(env)
    engine = services.ctx.db.engine
    population.fill_tokens(engine, args.token_counts[0], map_id)
    server = Server(env, args.workers, workdir / "server.log")
    try:
        server.wait_healthy()
        basic = "Basic " + base64.b64encode(f"{TOKEN_NAME}:{password}".encode()).decode()
        # The same request to both, so they differ only in what the handler does.
        query = f"?service={SERVICE}&scope={FLOOR_SCOPE}"
        floor = Target("floor", f"{server.url}{FLOOR_PATH}{query}", {"Authorization": basic})
        endpoint = Target("endpoint", f"{server.url}/oauth2/token{query}", {"Authorization": basic})
        _check_answers(floor, endpoint)
        common = {"connections": args.connections, "pgid": server.process_group}
        compare(floor, endpoint, pairs=1, seconds=WARM_UP_S, progress=lambda _: None, **common)

        print(f"  main: {args.pairs} pairs of {args.seconds} s")
        results["main"] = compare(floor, endpoint, pairs=args.pairs, seconds=args.seconds, **common)
        sweep = []
        for count in args.token_counts:
            fill_s = population.fill_tokens(engine, count, map_id)
            tokens = population.token_count(engine)
            print(f"  {tokens} tokens in the database (added in {fill_s:.1f} s)")
            row = compare(
                floor, endpoint, pairs=args.sweep_pairs, seconds=args.sweep_seconds, **common
            )
            sweep.append({"tokens": tokens, "fill_seconds": round(fill_s, 2), **row})
        results["token_sweep"] = sweep

        entries = _grow_scope_map(services)
        _check_answers(floor, endpoint)
        print(f"  scope map of {entries} entries")
        row = compare(floor, endpoint, pairs=args.sweep_pairs, seconds=args.sweep_seconds, **common)
        results["large_map"] = {
            "entries": entries,
            "tokens": population.token_count(engine),
            **row,
        }
    finally:
        server.stop()
        services.ctx.db.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not wrk_available():
        raise SystemExit("wrk is not installed: apt-get install -y wrk (see bench/README.md)")
    results: dict[str, Any] = {
        "database": args.database,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {
            "workers": args.workers,
            "load_generator": f"wrk -t1 -c{args.connections}",
            "keepalive": args.keepalive,
            "credential_cache": args.credential_cache,
            "pairs": args.pairs,
            "seconds": args.seconds,
            "sweep_pairs": args.sweep_pairs,
            "sweep_seconds": args.sweep_seconds,
        },
    }
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp,
        population.database_url(args.database, args.postgres_url) as db_url,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env["FLEET_DATA_DIR"] = str(Path(tmp) / "data")
        if db_url:
            env["FLEET_DATABASE_URL"] = db_url
        if args.keepalive is not None:
            env["FLEET_SERVE_KEEPALIVE"] = str(args.keepalive)
        if args.credential_cache is not None:
            env["FLEET_CREDENTIAL_CACHE"] = args.credential_cache
        subprocess.run(
            [FLEET, "init"], env=env, check=True, capture_output=True, timeout=CLI_TIMEOUT_S
        )
        _measure_server(args, env, Path(tmp), results)
    results["evaluation"] = [r.to_json() for r in evaluation.measure(args.rule_counts)]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def _errors(results: dict[str, Any]) -> int:
    blocks = [results["main"], *results["token_sweep"], results["large_map"]]
    return sum(block[kind]["errors"] for block in blocks for kind in ("floor", "endpoint"))


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(f"benchmarking on {args.database} ...")
    results = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.output / f"token_endpoint-{args.database}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(f"\nresults: {path}")
    if _errors(results):
        print("some requests failed: the figures above do not count", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
