"""``fleet-agent enroll``: generate the device's keys, call ``POST /api/v1/enroll`` once, keep the
answer. Nothing on disk changes unless the server said ``201`` with a usable answer.

Errors carry ``temporary``: a 503 (the server cannot reach its broker), a 5xx or an unreachable
server may succeed later; a 400, 401 or 409 will not until someone changes something.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from device_agent.protocol.device_id import InvalidDeviceId, validate_device_id
from device_agent.runtime import http_client
from device_agent.state import enrollment as files
from device_agent.state import status_file
from device_agent.state.enrollment import Enrollment, InvalidEnrollment
from device_agent.state.keys import load_or_create_device_keys, save_server_public_key
from device_agent.state.state_dir import StateDirError, secure_state_dir
from device_agent.state.store import FILENAME as STORE_FILENAME

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/enroll"
ENROLL_TIMEOUT_S = 30.0
MAX_MESSAGE_CHARS = 300


class EnrollError(Exception):
    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary


@dataclass(frozen=True)
class EnrollSecret:
    """Exactly one of the two is set; ``repr`` shows neither."""

    secret: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.code is None):
            raise ValueError("give an enrollment secret or a one-time code, not both or neither")

    def __repr__(self) -> str:
        return f"EnrollSecret({'secret' if self.secret is not None else 'code'}=...)"

    def request_field(self) -> dict[str, str]:
        if self.secret is not None:
            return {"enrollmentSecret": self.secret}
        return {"enrollmentCode": str(self.code)}


def enroll_url(server: str) -> str:
    return http_client.check_url(server.rstrip("/") + ENROLL_PATH)


def _server_message(answer: http_client.Response) -> str:
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:MAX_MESSAGE_CHARS]
    return f"HTTP {answer.status}"


def _refusal(answer: http_client.Response, device_id: str) -> EnrollError:
    said = _server_message(answer)
    status = answer.status
    if status == 400:
        return EnrollError(f"the server refused the request as invalid: {said}")
    if status == 401:
        return EnrollError(
            "the enrollment secret or code is not valid (wrong, revoked, expired or already "
            f"used): {said}"
        )
    if status == 409:
        return EnrollError(
            f"a device with id {device_id!r} is already enrolled: an operator must allow it to "
            f"enroll again, or choose another --device-id ({said})"
        )
    if status == 503:
        return EnrollError(
            f"the server cannot enroll devices right now (its broker is unavailable); try again "
            f"later: {said}",
            temporary=True,
        )
    return EnrollError(f"unexpected answer from the server: {said}", temporary=status >= 500)


def _reset_device_state(state_dir: Path) -> None:
    """A new enrollment starts with no credentials and no version history."""
    for name in (STORE_FILENAME, status_file.FILENAME):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()


def enroll(
    server: str,
    secret: EnrollSecret,
    *,
    device_id: str,
    state_dir: Path,
    force: bool = False,
    timeout_s: float = ENROLL_TIMEOUT_S,
) -> Enrollment:
    """Enroll this device; raises ``EnrollError`` with a message meant for the operator."""
    try:
        validate_device_id(device_id)
        url = enroll_url(server)
    except (InvalidDeviceId, ValueError) as error:
        raise EnrollError(str(error)) from None
    try:
        secure_state_dir(state_dir)  # before anything in it is read or trusted
    except StateDirError as error:
        raise EnrollError(str(error)) from None
    if files.is_enrolled(state_dir) and not force:
        raise EnrollError(
            f"this device is already enrolled ({files.path_in(state_dir)}); "
            "use --force to enroll again"
        )
    keys = load_or_create_device_keys(state_dir)
    body = {
        "deviceId": device_id,
        **secret.request_field(),
        "x25519PublicKey": keys.x25519_public_b64,
        "ed25519PublicKey": keys.ed25519_public_b64,
    }
    log.info("enrolling %s at %s", device_id, url)
    try:
        answer = http_client.request("POST", url, json_body=body, timeout_s=timeout_s)
    except http_client.Unreachable as error:
        raise EnrollError(f"cannot reach {url}: {error}", temporary=True) from None
    if http_client.is_redirect(answer):
        raise EnrollError(
            http_client.redirect_refused(answer, url)
            + "; if that address is the fleet server's, enroll with it as the server URL"
        )
    if answer.status not in (200, 201):
        raise _refusal(answer, device_id)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        enrolled = files.from_answer(server, answer.json(), enrolled_at=now)
    except InvalidEnrollment as error:
        raise EnrollError(f"the server's answer is not usable: {error}") from None
    if enrolled.device_id != device_id:
        raise EnrollError(f"the server enrolled {enrolled.device_id!r}, not {device_id!r}")
    _reset_device_state(state_dir)
    files.save_enrollment(state_dir, enrolled)
    save_server_public_key(state_dir, enrolled.server_signing_key)
    return enrolled
