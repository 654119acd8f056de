"""Benchmark: ``RegistryAuthService.authenticate`` in-process, without HTTP around it.

From the repository root::

    .venv/bin/python -m bench.credential_lookup                        # SQLite, cache on
    .venv/bin/python -m bench.credential_lookup --credential-cache off
    .venv/bin/python -m bench.credential_lookup --database postgresql

The token endpoint's own work is a few microseconds next to gunicorn's and the signing's, too
little for ``bench.token_endpoint`` to tell apart on a shared machine; this times it alone: a
token whose look-up is kept (the right password), a wrong password (kept, then read again) and
an unknown name (read every time), best of 7 loops. It uses only the service's public
constructor, so the same script times an older tree: copy this ``bench/`` package to a
directory DIR, then ``cd DIR && PYTHONPATH=<older tree> python -m bench.credential_lookup``
(run from DIR, so that this ``bench`` comes first and the older tree's ``fleet`` is used).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

from bench import population
from fleet.bootstrap import initialise
from fleet.config import load_settings
from fleet.domain.rules import RepositoryActions
from fleet.services.registry_auth import RegistryAuthService

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS1vZi1hdC1sZWFzdC0zMi1ieXRlcyE="
TOKEN = "bench-lookup"
REPEATS = 7


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Microseconds per call of each case, best of REPEATS loops."""
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp,
        population.database_url(args.database, args.postgres_url) as url,
    ):
        overrides: dict[str, object] = {
            "data_dir": Path(tmp),
            "database_url": url,
            "secret_key": SECRET_KEY,
            "scheduler_enabled": "false",
        }
        if args.credential_cache is not None:
            overrides["credential_cache"] = args.credential_cache
        services = initialise(load_settings(environ={}, overrides=overrides))
        try:
            rules = [RepositoryActions("samples/hello-world", ("content/read",))]
            password = services.tokens.create(TOKEN, repositories=rules, actor="bench")
            value = password.passwords[0].value or ""
            auth = RegistryAuthService(services.ctx)
            if auth.authenticate(TOKEN, value) is None:
                raise RuntimeError("the bench token does not authenticate")
            cases = {
                "kept": (lambda: auth.authenticate(TOKEN, value), args.calls),
                "wrong password": (lambda: auth.authenticate(TOKEN, "wrong"), args.calls // 10),
                "unknown name": (lambda: auth.authenticate("nobody", value), args.calls // 10),
            }
            return {
                name: min(timeit.repeat(call, number=calls, repeat=REPEATS)) / calls * 1e6
                for name, (call, calls) in cases.items()
            }
        finally:
            services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--credential-cache", choices=("on", "off"), default=None)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per loop, kept [20000]")
    args = parser.parse_args(argv)
    figures = measure(args)
    print(" ".join(f"{name}: {us:.2f} us" for name, us in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
