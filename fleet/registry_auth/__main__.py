"""Operator helper: ``python -m fleet.registry_auth bundle|rotate --keys DIR --bundle FILE``.

``bundle`` creates the key ring if needed and writes the registry's ``rootcertbundle``;
``rotate`` adds a key (signing after ``--publish-delay`` seconds) and rewrites the bundle. Restart
the registry after either: it reads the bundle only when it starts.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from fleet.registry_auth.keyring import DEFAULT_PUBLISH_DELAY, KeyRing
from fleet.registry_auth.tokens import DEFAULT_TOKEN_LIFETIME


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet.registry_auth", description=__doc__)
    parser.add_argument("command", choices=("bundle", "rotate"))
    parser.add_argument("--keys", required=True, help="key ring directory (kept private)")
    parser.add_argument("--bundle", required=True, help="rootcertbundle file to write")
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME)
    parser.add_argument("--publish-delay", type=float, default=DEFAULT_PUBLISH_DELAY)
    return parser


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ring = KeyRing.open(
        args.keys, token_lifetime=args.token_lifetime, publish_delay=args.publish_delay
    )
    if args.command == "rotate":
        ring.rotate()
    else:
        ring.prune()
    ring.write_bundle(args.bundle)
    for entry in ring.entries:
        retire = "-" if entry.retire_after is None else _iso(entry.retire_after)
        print(f"{entry.key.kid}  signs from {_iso(entry.signing_from)}  retires {retire}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
