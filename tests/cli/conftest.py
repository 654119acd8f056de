"""The CLI against a live HTTP server on each database (``db_url`` from ``tests/conftest.py``:
SQLite, and PostgreSQL marked ``postgres``), as a user's shell runs it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result
from werkzeug.serving import make_server

from fleet.app import create_app
from fleet.cli import cli
from fleet.services import Services


@dataclass
class Fleet:
    """Runs ``fleet ...`` against a live HTTP server, as a user's shell would."""

    url: str
    key: str

    def run(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli, list(args), input=input, env={"FLEET_URL": self.url, "FLEET_API_KEY": self.key}
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, (result.output, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))


@pytest.fixture
def fleet(services: Services) -> Iterator[Fleet]:
    app = create_app(services.ctx.settings, services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _, key = services.api_keys.create("cli-tests", actor="test")
    yield Fleet(f"http://127.0.0.1:{server.server_port}", key)
    server.shutdown()
    thread.join(5)
