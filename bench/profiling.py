"""Where a process's time goes: py-spy on live server workers, cProfile on a one-off command.

``py-spy record --format raw`` writes one line per distinct stack (``frame;frame;... count``,
root first). :func:`summarise_raw` reads it back as the share of samples that pass through each
of a few named parts of the server (the first part found from the leaf up wins, so a sample is
counted once), and the functions with the largest inclusive share. py-spy samples only threads
that are running (not waiting), so the shares are of CPU, not of wall time.
"""

from __future__ import annotations

import pstats
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
SAMPLE_RATE = 50
TOP = 15

# (part, substrings of a frame "function (file:line)"): checked from the leaf up.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("seal/open (X25519, AEAD, Ed25519)", ("envelope.py", "cryptography")),
    ("keyed hash (HMAC)", ("credentials.py",)),
    ("PostgreSQL driver (psycopg)", ("psycopg",)),
    ("SQLite driver", ("sqlite3",)),
    ("SQLAlchemy / SQLModel (ORM, SQL compile)", ("sqlalchemy", "sqlmodel")),
    ("MQTT (paho)", ("paho",)),
    ("JSON", ("json/",)),
    ("HTTP (gunicorn, werkzeug, flask)", ("gunicorn", "werkzeug", "flask")),
    ("logging", ("logging/",)),
)


def py_spy_available() -> bool:
    return Path(PY_SPY).exists()


def start_py_spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    """Sample ``pid`` (and its threads) for ``seconds`` into ``out``, in the background."""
    command = [PY_SPY, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE)]
    command += ["--duration", str(seconds), "--format", "raw", "--output", str(out)]
    command += ["--nonblocking", "--gil"]  # CPU: only the thread holding the GIL counts
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def summarise_raw(paths: list[Path]) -> dict[str, Any]:
    parts: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            for frame in set(frames):
                functions[frame] += count
            parts[_part(frames)] += count
    return {
        "samples": total,
        "parts": {k: round(v / total, 3) for k, v in parts.most_common()} if total else {},
        "top_inclusive": [
            {"frame": frame, "share": round(n / total, 3)}
            for frame, n in functions.most_common(TOP * 3)
            if "(fleet/" in frame or "fleet/" in frame
        ][:TOP]
        if total
        else [],
    }


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in PARTS:
            if any(n in frame for n in needles):
                return name
    return "other (fleet code, interpreter)"


# Functions of a one-off command's profile whose cumulative time is reported, by what they do.
PASS_PARTS: tuple[tuple[str, str, str], ...] = (
    ("sealing (seal: X25519 + AEAD + Ed25519)", "envelope.py", "seal"),
    ("new passwords (generate_secret)", "credentials.py", "generate_secret"),
    ("keyed hashes (SecretHasher.hash)", "credentials.py", "hash"),
    ("publishing (Publisher.publish_many, PUBACKs)", "publisher.py", "publish_many"),
    ("commits (Session.commit)", "session.py", "commit"),
    ("flushes (Session.flush)", "session.py", "flush"),
    ("SQL execution (Connection._execute_context)", "base.py", "_execute_context"),
    ("rotation (RotationService.issue)", "rotation.py", "issue"),
    ("the reconciler pass (Reconciler.run_pass)", "reconciler.py", "run_pass"),
)


def summarise_pstats(path: Path) -> dict[str, float]:
    """Cumulative seconds of the :data:`PASS_PARTS` functions in a cProfile file."""
    stats = pstats.Stats(str(path))
    found: dict[str, float] = {}
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in table.items():
        for label, file_part, name in PASS_PARTS:
            if function == name and filename.endswith(file_part):
                found[label] = round(found.get(label, 0.0) + ct, 3)
    return found
