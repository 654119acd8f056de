"""Drive a URL with ``wrk`` (one thread, a few connections) and read its figures.

wrk is a small C program: with one thread it takes a fraction of one core, so on a 2-core
machine the server's two gunicorn workers keep most of the CPU. Install it with
``apt-get install -y wrk``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

WRK = "wrk"
REPORT_SCRIPT = Path(__file__).with_name("wrk_report.lua")
REPORT_PREFIX = "WRK_JSON "
THREADS = 1
REQUEST_TIMEOUT_S = 5
# wrk stops itself after the duration; this only guards against it hanging.
PROCESS_GRACE_S = 30


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadResult:
    label: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers, connection, read, write errors and timeouts
    # CPU time the server's processes (gunicorn master and workers) spent per request: unlike
    # req/s, it hardly moves when other programs on a shared machine take CPU.
    server_cpu_us: float | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def process_group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk_available() -> bool:
    return shutil.which(WRK) is not None


def run_wrk(
    label: str,
    url: str,
    *,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    if not wrk_available():
        raise LoadError("wrk is not installed: apt-get install -y wrk")
    command = [
        WRK,
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "-s",
        str(REPORT_SCRIPT),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + PROCESS_GRACE_S,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(REPORT_PREFIX)), None)
    if done.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len(REPORT_PREFIX) :])
    elapsed = raw["duration_us"] / 1e6
    errors = sum(
        raw[k] for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return LoadResult(
        label=label,
        requests=raw["requests"],
        seconds=round(elapsed, 3),
        rps=round(raw["requests"] / elapsed, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
    )
