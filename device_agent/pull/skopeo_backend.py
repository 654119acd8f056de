"""Pull with skopeo: ``skopeo copy docker://LOGIN_SERVER/REPO:TAG oci:OUTPUT/LAYOUT:TAG``.

The login goes in a temporary auth file (``--src-authfile``) rather than ``--src-creds``: a
command line is readable by every local user. ``--src-tls-verify`` follows the configuration;
the platform picks the entry of an image index (``--override-os/-arch/-variant``). skopeo's own
retries are off: the agent's schedule backs off instead. The digest comes from
``--digestfile``.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from device_agent.pull.auth_file import RUN_DIR, temporary_auth_file
from device_agent.pull.backend import PullFailed, PullRequest, looks_like_auth_failure
from device_agent.pull.child import run_child

SKOPEO = "skopeo"
MAX_ERROR_CHARS = 400


def platform_flags(platform: str) -> list[str]:
    names = ("--override-os", "--override-arch", "--override-variant")
    return [f"{flag}={value}" for flag, value in zip(names, platform.split("/"), strict=False)]


def skopeo_error(stderr: str) -> str:
    """The last meaningful line of skopeo's output."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else "skopeo failed")[:MAX_ERROR_CHARS]


class SkopeoBackend:
    name = "skopeo"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which(SKOPEO) or SKOPEO

    def pull(self, request: PullRequest, cancel: threading.Event) -> str:
        image = request.image
        layout = request.output / image.layout_name
        layout.mkdir(parents=True, exist_ok=True)
        digest_file = request.state_dir / RUN_DIR / f"digest-{threading.get_ident()}"
        with temporary_auth_file(request.state_dir, request.credentials) as auth:
            argv = [
                self.binary,
                *platform_flags(request.platform),
                "copy",
                "--retry-times=0",
                f"--src-tls-verify={'true' if request.tls_verify else 'false'}",
                f"--src-authfile={auth}",
                f"--digestfile={digest_file}",
                f"docker://{image.full_name(request.login_server)}",
                f"oci:{layout}:{image.layout_ref}",
            ]
            result = run_child(argv, env=_environment(), timeout_s=request.timeout_s, cancel=cancel)
        try:
            if result.returncode != 0:
                message = skopeo_error(result.stderr)
                raise PullFailed(message, auth=looks_like_auth_failure(result.stderr))
            digest = _read_digest(digest_file)
        finally:
            digest_file.unlink(missing_ok=True)
        return digest


def _environment() -> dict[str, str]:
    """skopeo needs no credential from the environment; pass on only what it may use."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
    return {k: v for k, v in os.environ.items() if k.upper() in keep}


def _read_digest(path: Path) -> str:
    try:
        digest = path.read_text(encoding="ascii").strip()
    except OSError:
        raise PullFailed("skopeo wrote no digest") from None
    if not digest.startswith("sha256:"):
        raise PullFailed(f"skopeo wrote an unexpected digest {digest[:80]!r}")
    return digest
