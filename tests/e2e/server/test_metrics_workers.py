"""``/metrics`` of a real ``fleet serve --workers 2``: token requests spread over both workers
add up in every scrape, whichever worker answers it, and survive a worker killed and
replaced (its counters stay; gunicorn's ``child_exit`` clears only its live gauges)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fleet_process import FleetServer
from tests.e2e.stack import SERVER_ENV, SERVICE
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "e2e-metrics-" + "0123456789abcdef" * 3
GRANTED = 60
WRONG = 15
CLIENTS = 6
SCRAPES = 12
HTTP_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    env = {**SERVER_ENV, "FLEET_METRICS_TOKEN": METRICS_TOKEN}
    with FleetServer(tmp_path_factory.mktemp("metrics"), env=env) as server:
        yield server


def counts(server: FleetServer) -> dict[str, float]:
    answer = requests.get(
        f"{server.url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=scaled(HTTP_TIMEOUT_S),
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            found[key] = sample.value
    return found


def ask(server: FleetServer, name: str, password: str) -> int:
    # A new connection each time: the kernel hands them to either worker.
    return requests.get(
        f"{server.url}/oauth2/token",
        params={"service": SERVICE, "scope": "repository:samples/app:pull"},
        auth=(name, password),
        timeout=scaled(HTTP_TIMEOUT_S),
        headers={"Connection": "close"},
    ).status_code


def worker_pids(server: FleetServer) -> list[int]:
    master = server._process
    assert master is not None
    out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def counter_files(server: FleetServer) -> list[Path]:
    return sorted((server.data_dir / "metrics").glob("counter_*.db"))


def test_counts_add_up_across_workers_in_every_scrape(server: FleetServer) -> None:
    made = server.cli_ok(
        "token", "create", "--name", "metrics-puller", "--scope-map", "_repositories_pull"
    ).json()
    password = made["credentials"]["passwords"][0]["value"]
    refused = requests.get(f"{server.url}/metrics", timeout=scaled(HTTP_TIMEOUT_S))
    assert refused.status_code == 401  # no token, no numbers
    before = counts(server)
    granted_key = "fleet_token_requests_total|outcome=granted"
    wrong_key = "fleet_token_requests_total|outcome=bad_credentials"

    with ThreadPoolExecutor(CLIENTS) as pool:
        good = list(pool.map(lambda _: ask(server, "metrics-puller", password), range(GRANTED)))
        bad = list(pool.map(lambda _: ask(server, "metrics-puller", "fltp_no"), range(WRONG)))
    assert good == [200] * GRANTED and bad == [401] * WRONG
    assert len(counter_files(server)) == 2  # both workers answered some and wrote their counts

    for _ in range(SCRAPES):  # answered by either worker: the same sums
        now = counts(server)
        assert now.get(granted_key, 0) - before.get(granted_key, 0) == GRANTED
        assert now.get(wrong_key, 0) - before.get(wrong_key, 0) == WRONG
        latency = "fleet_token_request_seconds_count"
        assert now[latency] - before.get(latency, 0) == GRANTED + WRONG

    # A worker killed: gunicorn starts another; what the dead one counted is still there.
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in worker_pids(server) and len(worker_pids(server)) == 2,
        "gunicorn replaces the killed worker",
        timeout=20,
    )
    after = counts(server)
    assert after[granted_key] - before.get(granted_key, 0) == GRANTED
    assert after[wrong_key] - before.get(wrong_key, 0) == WRONG
