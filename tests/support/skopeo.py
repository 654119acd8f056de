"""Drive the real ``skopeo`` against a local registry; results are returned, never raised.

Tests assert on what a user would see, e.g. ``"requested access to the resource is denied"``::

    result = copy_to_registry(image, registry.host_port, "samples/nginx", "v1", creds)
    assert not result.ok and DENIED in result.stderr

``creds`` is ``"user:password"``; ``None`` means anonymous. ``token`` passes a bearer token
straight to the registry instead.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.oci import OciImage
from tests.support.timing import scaled

SKOPEO = "/usr/bin/skopeo"
COMMAND_TIMEOUT_S = 30.0  # skopeo's own --command-timeout, unscaled (a bound on a failure)
PROCESS_TIMEOUT_MARGIN_S = 30.0  # the process is killed this long after skopeo should have quit
RETRY_TIMES = "0"
# What skopeo 1.9.3 prints (in stderr) when the registry refuses the token's access, and when
# the token endpoint answers 401 (wrong password, or no credentials at all).
DENIED = "requested access to the resource is denied"
INVALID_CREDENTIALS = "unable to retrieve auth token: invalid username/password: unauthorized"


@dataclass(frozen=True)
class SkopeoResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _run(args: list[str], command_timeout_s: float = COMMAND_TIMEOUT_S) -> SkopeoResult:
    command = [SKOPEO, "--command-timeout", f"{command_timeout_s:g}s", *args]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=scaled(command_timeout_s + PROCESS_TIMEOUT_MARGIN_S),
        check=False,
    )
    return SkopeoResult(command, completed.returncode, completed.stdout, completed.stderr)


def _auth(prefix: str, creds: str | None, token: str | None) -> list[str]:
    """Credential flags for one side; ``prefix`` is ``"src-"``, ``"dest-"`` or ``""``."""
    if token is not None:
        return [f"--{prefix}registry-token", token]
    if creds is not None:
        return [f"--{prefix}creds", creds]
    return [f"--{prefix}no-creds"]


def docker_reference(host_port: str, repository: str, reference: str) -> str:
    separator = "@" if reference.startswith("sha256:") else ":"
    return f"docker://{host_port}/{repository}{separator}{reference}"


def copy_to_registry(
    image: OciImage,
    host_port: str,
    repository: str,
    tag: str,
    creds: str | None = None,
    *,
    token: str | None = None,
) -> SkopeoResult:
    """Push an OCI layout to ``docker://HOST:PORT/REPOSITORY:TAG``."""
    return _run(
        [
            "--insecure-policy",
            "copy",
            "--retry-times",
            RETRY_TIMES,
            "--dest-tls-verify=false",
            *_auth("dest-", creds, token),
            image.reference,
            docker_reference(host_port, repository, tag),
        ]
    )


def copy_from_registry(
    host_port: str,
    repository: str,
    reference: str,
    destination: Path,
    creds: str | None = None,
    *,
    token: str | None = None,
    command_timeout_s: float = COMMAND_TIMEOUT_S,
) -> SkopeoResult:
    """Pull into ``dir:DESTINATION`` (blobs named by their hex digest, plus ``manifest.json``);
    ``command_timeout_s`` for a pull that is meant to take long."""
    return _run(
        [
            "--insecure-policy",
            "copy",
            "--retry-times",
            RETRY_TIMES,
            "--src-tls-verify=false",
            *_auth("src-", creds, token),
            docker_reference(host_port, repository, reference),
            f"dir:{destination}",
        ],
        command_timeout_s,
    )


def list_tags(
    host_port: str, repository: str, creds: str | None = None, *, token: str | None = None
) -> SkopeoResult:
    return _run(
        [
            "list-tags",
            "--retry-times",
            RETRY_TIMES,
            "--tls-verify=false",
            *_auth("", creds, token),
            f"docker://{host_port}/{repository}",
        ]
    )


def tags_of(result: SkopeoResult) -> list[str]:
    """The tags in a successful :func:`list_tags` result."""
    return list(json.loads(result.stdout)["Tags"])


def delete(
    host_port: str,
    repository: str,
    reference: str,
    creds: str | None = None,
    *,
    token: str | None = None,
) -> SkopeoResult:
    """Delete a manifest (by tag or digest); the registry must allow deletes."""
    return _run(
        [
            "delete",
            "--retry-times",
            RETRY_TIMES,
            "--tls-verify=false",
            *_auth("", creds, token),
            docker_reference(host_port, repository, reference),
        ]
    )
