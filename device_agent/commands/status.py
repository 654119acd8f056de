"""``fleet-agent status``: who this device is enrolled as, its broker, its credential (version,
slot, expiry; never the password), the last pull and its result, and whether ``run`` is alive.
Read-only: it never opens the store for writing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_agent.runtime.status import credential_summary
from device_agent.state.enrollment import InvalidEnrollment, NotEnrolled, load_enrollment
from device_agent.state.status_file import read_status
from device_agent.state.store import StoreCorrupt, load_state

EXIT_OK = 0
EXIT_NOT_ENROLLED = 1


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gather(state_dir: Path) -> dict[str, Any]:
    enrollment = load_enrollment(state_dir)
    report: dict[str, Any] = {
        "device_id": enrollment.device_id,
        "enrollment_status": enrollment.status,
        "server": enrollment.server,
        "enrolled_at": enrollment.enrolled_at,
        "broker": enrollment.mqtt.url,
        "mqtt_username": enrollment.mqtt.username,
        "registry": enrollment.registry.login_server,
        "registry_username": enrollment.registry.username,
    }
    try:
        state = load_state(state_dir)
        report["store"] = "ok"
        report["credentials"] = credential_summary(state.current)
        report["staged_version"] = state.staged.version if state.staged else None
        report["versions"] = dict(state.versions)
    except StoreCorrupt as error:
        report["store"] = f"corrupt: {error}"
        report["credentials"] = None
    except OSError as error:  # the store is 0600: run status as the agent's user or root
        report["store"] = f"unreadable: {error.strerror}"
        report["credentials"] = None
    running = read_status(state_dir) or {}
    report["agent_running"] = bool(running.get("running")) and _alive(running.get("pid"))
    report["connected"] = report["agent_running"] and bool(running.get("connected"))
    for key in ("connected_since", "last_pull", "refusals", "updated_at", "pulls"):
        report[key] = running.get(key)
    return report


def _expiry_text(expiry: str | None) -> str:
    if expiry is None:
        return "no expiry"
    left = datetime.fromisoformat(expiry) - datetime.now(UTC)
    days = left.total_seconds() / 86400
    return f"expires {expiry} ({'EXPIRED' if days < 0 else f'in {days:.1f} days'})"


def _broker_line(report: dict[str, Any]) -> str:
    state = "not connected"
    if report["connected"]:
        since = report.get("connected_since")
        state = f"connected since {since}" if since else "connected"
    return f"broker        {report['broker']} as {report['mqtt_username']}: {state}"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"enrolled as   {report['device_id']} ({report['enrollment_status']}) "
        f"at {report['server']} on {report['enrolled_at']}",
        _broker_line(report),
        f"registry      {report['registry']} as {report['registry_username']}",
    ]
    credentials = report.get("credentials")
    if report.get("store") != "ok":
        lines.append(f"credentials   store {report['store']}")
    elif credentials is None:
        lines.append("credentials   none yet")
    else:
        lines.append(
            f"credentials   version {credentials['version']}, slot {credentials['slot']}, "
            + _expiry_text(credentials["expiry"])
        )
    if report.get("staged_version"):
        lines.append(f"              version {report['staged_version']} staged, not yet proven")
    pull = report.get("last_pull")
    if pull:
        result = f"ok {pull.get('digest')}" if pull.get("ok") else f"FAILED: {pull.get('error')}"
        lines.append(f"last pull     {pull.get('image')} at {pull.get('at')}: {result}")
    else:
        lines.append("last pull     none yet")
    refusals = report.get("refusals") or {}
    if refusals:
        counted = ", ".join(f"{reason} {count}" for reason, count in sorted(refusals.items()))
        lines.append(f"refused       {counted}")
    lines.append(f"agent         {'running' if report['agent_running'] else 'not running'}")
    return "\n".join(lines)


def status(state_dir: Path, as_json: bool, out: Any) -> int:
    try:
        report = gather(state_dir)
    except (NotEnrolled, InvalidEnrollment, OSError) as error:
        if as_json:
            json.dump({"enrolled": False, "error": str(error)}, out)
            out.write("\n")
        else:
            print(str(error), file=out)
        return EXIT_NOT_ENROLLED
    if as_json:
        json.dump({"enrolled": True, **report}, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        print(render(report), file=out)
    return EXIT_OK
