"""The ``builtin`` backend as the agent uses it: the built-in puller runs in a child process
(``python -m device_agent.pull.builtin_child``), so the long-running agent never loads ``requests``
and gives every byte a pull needed back to the system when it ends (``python -m
bench.agent_footprint`` measures the agent's memory after its first pull and the child's peak).
Cancelling is stopping the child.

The request travels on the child's stdin as JSON, password included (never in its arguments or
environment, which other local users can read); the answer comes back on stdout as
``{"digest": ...}`` or ``{"error": ..., "auth": ...}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from device_agent.pull.backend import PullFailed, PullRequest
from device_agent.pull.child import run_child
from device_agent.pull.images import ImageRef
from device_agent.state.credentials import Credentials

MODULE = "device_agent.pull.builtin_child"


def encode_request(request: PullRequest) -> str:
    image = request.image
    return json.dumps(
        {
            "image": {"repository": image.repository, "tag": image.tag, "digest": image.digest},
            "credentials": request.credentials.to_record(),
            "output": str(request.output),
            "state_dir": str(request.state_dir),
            "tls_verify": request.tls_verify,
            "platform": request.platform,
            "timeout_s": request.timeout_s,
        }
    )


def decode_request(text: str) -> PullRequest:
    document: dict[str, Any] = json.loads(text)
    return PullRequest(
        image=ImageRef(**document["image"]),
        credentials=Credentials.from_record(document["credentials"]),
        output=Path(document["output"]),
        state_dir=Path(document["state_dir"]),
        tls_verify=bool(document["tls_verify"]),
        platform=str(document["platform"]),
        timeout_s=float(document["timeout_s"]),
    )


class ChildPuller:
    name = "builtin"

    def pull(self, request: PullRequest, cancel: threading.Event) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_AGENT_ENROLL")}
        result = run_child(
            [sys.executable, "-m", MODULE],
            env=env,
            timeout_s=request.timeout_s,
            cancel=cancel,
            stdin_data=encode_request(request),
        )
        try:
            answer = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise PullFailed(f"the built-in puller failed: {tail[0][:300]}") from None
        if "digest" in answer:
            return str(answer["digest"])
        raise PullFailed(str(answer.get("error")), auth=bool(answer.get("auth")))


def main() -> int:
    from device_agent.pull.oci_puller import BuiltinPuller

    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    request = decode_request(sys.stdin.read())
    try:
        answer: dict[str, Any] = {"digest": BuiltinPuller().pull(request, cancel)}
    except PullFailed as error:
        answer = {"error": error.message, "auth": error.auth}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
