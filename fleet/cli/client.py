"""The CLI's HTTP client for the REST API. Errors become one line on stderr and exit 1."""

from __future__ import annotations

import os
from typing import Any

import click
import requests

from fleet.cli.hints import hint_for

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT_S = 30


class ApiError(click.ClickException):
    """The server's error, with the CLI's own advice for it (``fleet.cli.hints``) after it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        text = f"{message} ({code}, HTTP {status})"
        ctx = click.get_current_context(silent=True)
        advice = hint_for(ctx.command_path, code, ctx.params) if ctx is not None else None
        super().__init__(f"{text}; {advice}" if advice else text)
        self.status = status
        self.code = code


class ApiClient:
    def __init__(self, server: str | None = None, api_key: str | None = None) -> None:
        self.server = (server or os.environ.get("FLEET_URL") or DEFAULT_SERVER).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("FLEET_API_KEY", "")
        self.session = requests.Session()

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if not self.api_key:
            raise click.ClickException(
                "no API key: set FLEET_API_KEY (create one on the server with "
                "`fleet admin create-key --name NAME`)"
            )
        url = f"{self.server}/api/v1{path}"
        try:
            response = self.session.request(
                method,
                url,
                json=body,
                params=params,
                timeout=TIMEOUT_S,
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
        except requests.RequestException as exc:
            raise click.ClickException(
                f"cannot reach the fleet server at {self.server}: {exc.__class__.__name__}; "
                "set --server or FLEET_URL"
            ) from None
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
            raise ApiError(
                response.status_code,
                error.get("code", "Error"),
                error.get("message", response.text.strip()[:200] or response.reason),
            )
        return payload
