"""``fleet-agent``: the device agent's command line. Subcommands come later."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from device_agent import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-agent",
        description="Keep this device's registry credentials fresh and its images pulled.",
        epilog="Example: fleet-agent --version",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
