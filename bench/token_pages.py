"""The dashboard's Tokens and Scope maps pages at fleet scale: server time and queries.

Fills a fresh database (a SQLite file, and a schema of its own on PostgreSQL) with
``--tokens`` tokens (each with one password) on one scope map, and ``--maps`` more user
scope maps of three rules each, with Core bulk inserts. Then an admin signs in with Flask's
test client and each page is timed in process (session check, service queries, template):
the first page of the token list, a page deep inside it (by its cursor) and the page before
that, a token's page, the list of scope maps, and the page of the map every token uses (its
rules, and the first page of those tokens). Median and p99 of ``--runs`` requests after three
to warm up, and the SQL statements one request issues.

    .venv/bin/python -m bench.token_pages --tokens 100000 --maps 10000 --runs 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import Engine, event, insert, select, text

from bench import population
from fleet.app import create_app
from fleet.bootstrap import initialise
from fleet.config import load_settings
from fleet.db.models import ScopeMap, ScopeMapEntry
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.operators import OperatorService

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS1vZi1hdC1sZWFzdC0zMi1ieXRlcyE="
PASSWORD = "bench password, long enough"
BATCH = 5_000
SHARED_MAP = "bench-shared"


def _maps(engine: Engine, count: int) -> None:
    now = datetime.now(UTC)
    maps, entries = ScopeMap.__table__, ScopeMapEntry.__table__  # type: ignore[attr-defined]
    for start in range(0, count, BATCH):
        names = [f"bench-map-{i:06d}" for i in range(start, min(count, start + BATCH))]
        with engine.begin() as conn:
            conn.execute(
                insert(maps),
                [{"name": n, "description": "bench", "type": "UserDefined", "revision": 1,
                  "created_at": now, "updated_at": now} for n in names],
            )  # fmt: skip
            ids = conn.execute(select(maps.c.id).where(maps.c.name.in_(names))).scalars()
            conn.execute(
                insert(entries),
                [{"scope_map_id": i, "repository": f"team-{i}/*", "action": a}
                 for i in ids for a in ("content/read", "content/write", "metadata/read")],
            )  # fmt: skip


def fill(services: Services, tokens: int, maps: int) -> float:
    started = time.perf_counter()
    rule = [RepositoryActions("samples/*", ("content/read", "content/write"))]
    shared = services.scope_maps.create(SHARED_MAP, rule, actor="bench")
    engine = services.ctx.db.engine
    with engine.connect() as conn:
        table = ScopeMap.__table__  # type: ignore[attr-defined]
        map_id = conn.execute(select(table.c.id).where(table.c.name == shared.name)).scalar_one()
    population.fill_tokens(engine, tokens, map_id)
    _maps(engine, maps)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    return time.perf_counter() - started


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class _Statements:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def _link(page: str, rel: str) -> str:
    return page.split(f'" rel="{rel}"')[0].rsplit('href="', 1)[1].replace("&amp;", "&")


def _paths(client: Any, depth: int) -> Iterator[tuple[str, str]]:
    yield "token list, first page", "/ui/tokens"
    path = "/ui/tokens"
    for _ in range(depth):  # follow Next as an operator would
        path = _link(client.get(path).get_data(as_text=True), "next")
    yield f"token list, page {depth + 1}", path
    yield (
        f"token list, Previous from page {depth + 1}",
        _link(client.get(path).get_data(as_text=True), "prev"),
    )
    yield "a token's page", f"/ui/tokens/{population.BULK_PREFIX}{1:06d}"
    yield "scope map list, first page", "/ui/scope-maps"
    yield "the shared map's page", f"/ui/scope-maps/{SHARED_MAP}"


def measure(database_url: str, tokens: int, maps: int, runs: int, depth: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fleet-bench-tokens-") as tmp:
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": Path(tmp) / "data",
                "database_url": database_url or f"sqlite:///{Path(tmp) / 'fleet.db'}",
                "secret_key": SECRET_KEY,
                "scheduler_enabled": "false",
                "max_tokens": max(tokens, 50_000),
                "max_scope_maps": max(maps + 10, 50_000),
            },
        )
        services = initialise(settings)
        try:
            fill_s = fill(services, tokens, maps)
            cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            services.operators = OperatorService(services.ctx, cheap)
            services.operators.create("bench", "admin", PASSWORD, actor="bench")
            client = create_app(settings, services).test_client()
            page = client.get("/ui/sign-in").get_data(as_text=True)
            csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
            signed = client.post(
                "/ui/sign-in", data={"csrf_token": csrf, "name": "bench", "password": PASSWORD}
            )
            assert signed.status_code == 302, signed.status_code
            statements = _Statements(services.ctx.db.engine)
            pages = {}
            for what, path in _paths(client, depth):
                for _ in range(3):
                    client.get(path)
                before = statements.count
                client.get(path)
                queries = statements.count - before
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    answer = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"GET {path} answered {answer.status_code}")
                pages[what] = {
                    "median_ms": round(statistics.median(times), 1),
                    "p99_ms": round(_percentile(times, 0.99), 1),
                    "statements": queries,
                }
            return {
                "database": services.ctx.db.engine.dialect.name,
                "tokens": tokens,
                "maps": maps,
                "fill_seconds": round(fill_s, 1),
                "runs": runs,
                "pages": pages,
            }
        finally:
            services.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--depth", type=int, default=20, help="Next pages followed")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args(argv)
    for database in args.databases.split(","):
        if database == "postgresql":
            with population.postgres_schema(args.postgres_url) as url:
                result = measure(url, args.tokens, args.maps, args.runs, args.depth)
        else:
            result = measure("", args.tokens, args.maps, args.runs, args.depth)
        print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
