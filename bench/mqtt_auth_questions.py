"""What one broker question costs fleet in ``FLEET_MQTT_AUTH=http`` mode: RabbitMQ's login
question (``/mqtt-auth/rabbitmq/user``) and topic question (``/mqtt-auth/rabbitmq/topic``),
answered through the whole Flask app (routes, secret check, database look-up, keyed hash) on
one thread, with the wall time and the process's CPU per question.

    .venv/bin/python -m bench.mqtt_auth_questions                  # 2,000 questions of each
    .venv/bin/python -m bench.mqtt_auth_questions --questions 500 --devices 50

No HTTP server and no broker: Flask's test client calls the app in this process, so the figure
is fleet's own cost per question, without gunicorn's or the network's. SQLite in a temporary
directory; the devices are enrolled through the service with the http broker, as in the tests
(``tests/support/http_logins.py``). Every answer is checked to be ``allow``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fleet.app import create_app
from fleet.bootstrap import initialise
from fleet.domain.rules import RepositoryActions
from fleet.services.http_broker import HttpAuthBroker
from tests.conftest import make_settings
from tests.support.fake_broker import FakeBroker
from tests.support.http_logins import HTTP_MODE, SECRET, HttpLogins, client, enroll


def _timed(label: str, questions: int, ask: object) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(questions):
        ask(i)  # type: ignore[operator]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:10s} {questions} questions in {wall:.2f} s: {questions / wall:.0f}/s, "
        f"{wall / questions * 1000:.2f} ms wall and {cpu / questions * 1000:.2f} ms CPU each"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=2000, help="questions of each kind")
    parser.add_argument("--devices", type=int, default=200, help="devices enrolled first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        settings = make_settings(directory / "data", f"sqlite:///{directory / 'f.db'}", **HTTP_MODE)
        services = initialise(settings)
        ctx = services.ctx
        services.broker = HttpLogins(  # type: ignore[assignment]
            HttpAuthBroker(ctx.settings, ctx.hasher, ctx.db, on_status=None), FakeBroker()
        )
        services.scope_maps.create(
            "read-edge", [RepositoryActions("edge/*", ("content/read",))], actor="bench"
        )
        services.groups.create("pilots", scope_map="read-edge", actor="bench")
        passwords = {f"q-{i:05d}": enroll(services, f"q-{i:05d}") for i in range(args.devices)}
        ids = list(passwords)
        http = create_app(ctx.settings, services).test_client()

        def login(i: int) -> None:
            device = ids[i % len(ids)]
            answer = http.post(
                f"/mqtt-auth/rabbitmq/user?secret={SECRET}",
                data={
                    "username": device,
                    "password": passwords[device],
                    "vhost": "/",
                    "client_id": client(device),
                },
            )
            assert answer.data == b"allow", answer.data

        def topic(i: int) -> None:
            device = ids[i % len(ids)]
            answer = http.post(
                f"/mqtt-auth/rabbitmq/topic?secret={SECRET}",
                data={
                    "username": device,
                    "vhost": "/",
                    "resource": "topic",
                    "name": "amq.topic",
                    "permission": "write",
                    "routing_key": f"fleet.v1.devices.{device}.status",
                    "variable_map.client_id": client(device),
                },
            )
            assert answer.data == b"allow", answer.data

        print(f"{args.devices} devices enrolled, SQLite, one thread, Flask's test client")
        _timed("login", args.questions, login)
        _timed("topic", args.questions, topic)
        services.close()


if __name__ == "__main__":
    main()
