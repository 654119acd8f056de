"""``fleet-agent``: the device agent's command line, a thin skin over the modules that do the
work (each imported only by the command that needs it, so ``--version`` and ``status`` start
fast and ``run`` loads no more than it uses).

Exit codes: 0 done; 1 failed (fix something first); 2 bad usage; 75 temporary failure (the
server or its broker is unavailable: try again later).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from device_agent import __version__

DEFAULT_STATE_DIR = Path("/var/lib/fleet-agent")
STATE_DIR_ENV = "FLEET_AGENT_STATE_DIR"
CONFIG_ENV = "FLEET_AGENT_CONFIG"
SECRET_ENV = "FLEET_AGENT_ENROLL_SECRET"
CODE_ENV = "FLEET_AGENT_ENROLL_CODE"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPORARY = 75  # EX_TEMPFAIL

ENROLL_EXAMPLE = """example:
  fleet-agent enroll --server https://fleet.example --secret flte_... --device-id rpi-0001

The secret or code may come from $FLEET_AGENT_ENROLL_SECRET or $FLEET_AGENT_ENROLL_CODE
instead, which keeps it out of the process list. Exit status 75: try again later."""
RUN_EXAMPLE = """example:
  fleet-agent run --config /etc/fleet-agent/agent.toml

Runs until SIGTERM or SIGINT. See deploy/agent/agent.toml for the configuration."""
STATUS_EXAMPLE = """example:
  fleet-agent status --json"""


def _state_dir_default() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-agent",
        description="Keep this device's registry credentials fresh and its images pulled.",
        epilog="Example: fleet-agent status   (commands: enroll, run, status; see -h of each)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=example,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--state-dir",
            type=Path,
            default=_state_dir_default(),
            help=f"keys, credentials and status (default ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
        )
        return sub

    enroll = command("enroll", "Enroll this device with the fleet server, once.", ENROLL_EXAMPLE)
    enroll.add_argument("--server", required=True, help="the fleet server's base URL")
    secret = enroll.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="the device group's enrollment secret")
    secret.add_argument("--code", help="a one-time enrollment code")
    enroll.add_argument(
        "--device-id", help="3-46 letters, digits, hyphens (default: host name + machine hash)"
    )
    enroll.add_argument("--force", action="store_true", help="replace an existing enrollment")

    run = command("run", "Receive credentials over MQTT and keep the images pulled.", RUN_EXAMPLE)
    run.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None,
        help="TOML or JSON configuration (default /etc/fleet-agent/agent.toml if present)",
    )
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    status = command(
        "status", "Show enrollment, credential version and the last pull.", STATUS_EXAMPLE
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _enroll(args: argparse.Namespace) -> int:
    from device_agent.commands.default_id import default_device_id
    from device_agent.commands.enroll import EnrollError, EnrollSecret, enroll
    from device_agent.runtime.logs import setup_logging

    setup_logging("info")
    secret, code = args.secret, args.code
    if secret is None and code is None:
        secret, code = os.environ.get(SECRET_ENV) or None, os.environ.get(CODE_ENV) or None
    if (secret is None) == (code is None):
        print("fleet-agent enroll: give exactly one of --secret or --code", file=sys.stderr)
        return EXIT_USAGE
    device_id = args.device_id or default_device_id()
    try:
        enrolled = enroll(
            args.server,
            EnrollSecret(secret=secret, code=code),
            device_id=device_id,
            state_dir=args.state_dir,
            force=args.force,
        )
    except EnrollError as error:
        print(f"fleet-agent enroll: {error.message}", file=sys.stderr)
        return EXIT_TEMPORARY if error.temporary else EXIT_FAILED
    print(f"enrolled as {enrolled.device_id}; broker {enrolled.mqtt.url}")
    if enrolled.status != "active":
        print(f"status {enrolled.status}: credentials arrive once an operator approves the device")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from device_agent.commands.run import run
    from device_agent.runtime.logs import setup_logging
    from device_agent.state.config import ConfigError, load_config
    from device_agent.state.enrollment import InvalidEnrollment, NotEnrolled
    from device_agent.state.keys import KeyFileError
    from device_agent.state.state_dir import StateDirError

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"fleet-agent run: {error}", file=sys.stderr)
        return EXIT_FAILED
    setup_logging(args.log_level or config.log_level)
    try:
        return run(args.state_dir, config)
    except (StateDirError, NotEnrolled, InvalidEnrollment, KeyFileError) as error:
        print(f"fleet-agent run: {error}", file=sys.stderr)
        return EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    from device_agent.commands.status import status

    return status(args.state_dir, args.json, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"enroll": _enroll, "run": _run, "status": _status}
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
