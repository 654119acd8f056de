"""Commands for the server host, with direct database access: init, admin keys, serve."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fleet.cli.base import with_example
from fleet.cli.host import build_services, initialise, load_settings
from fleet.cli.operators import COMMANDS as OPERATOR_COMMANDS

F = TypeVar("F", bound=Callable[..., Any])

LOCAL_ACTOR = "cli:server-host"


@click.command(
    "init",
    help=with_example(
        "Create or migrate the database and create the server's keys. Safe to run twice. "
        "The keys every server signs with live in the database, sealed with the secret key: "
        "give every server on one database the same FLEET_SECRET_KEY. Key files of an older "
        "data directory are moved into the database (and removed); a file holding other keys "
        "than the database's is refused.",
        "  FLEET_DATA_DIR=/var/lib/fleet fleet init",
    ),
)
def init() -> None:
    settings = load_settings()
    services = initialise(settings, lambda message: click.echo(message, err=True))
    click.echo(f"database ready: {services.ctx.db.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"data directory: {settings.data_dir.resolve()}")


@click.group("admin")
def admin() -> None:
    """Operator API keys and dashboard accounts (run on the server host)."""


@admin.command(
    "create-key",
    help=with_example(
        "Create an operator API key. The key is printed once, alone on the last line.",
        "  export FLEET_API_KEY=$(fleet admin create-key --name alice | tail -n 1)",
    ),
)
@click.option("--name", "-n", required=True, help="Who or what the key is for.")
def create_key(name: str) -> None:
    services = build_services(load_settings())
    view, value = services.api_keys.create(name, actor=LOCAL_ACTOR)
    click.echo(
        f"created API key {view.name!r} (ends in ...{view.hint}); it is shown only now:", err=False
    )
    click.echo(value)


@admin.command(
    "list-keys",
    help=with_example("List operator API keys (never their values).", "  fleet admin list-keys"),
)
def list_keys() -> None:
    services = build_services(load_settings())
    for key in services.api_keys.list():
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(f"{key.name}\t...{key.hint}\t{key.created_at.isoformat()}\t{state}")


@admin.command(
    "revoke-key",
    help=with_example(
        "Revoke every active API key with this name.", "  fleet admin revoke-key --name alice"
    ),
)
@click.option("--name", "-n", required=True)
def revoke_key(name: str) -> None:
    services = build_services(load_settings())
    count = services.api_keys.revoke(name, actor=LOCAL_ACTOR)
    click.echo(f"revoked {count} key(s) named {name!r}")


for _command in OPERATOR_COMMANDS:
    admin.add_command(_command)


def _setting(
    flag: str, envvar: str, default: int, bounds: tuple[int, int], text: str
) -> Callable[[F], F]:
    """A bounded integer option of `fleet serve`, also read from its environment variable."""
    return click.option(
        flag,
        envvar=envvar,
        default=default,
        show_default=True,
        type=click.IntRange(*bounds),
        help=text,
    )


@click.command(
    "serve",
    help=with_example(
        "Serve the REST API and token endpoint with gunicorn. Each worker reads whole requests "
        "in one loop (headers within --header-timeout, the body within --body-timeout) before "
        "one of its --threads threads handles them, so slow or idle clients hold no thread.",
        "  fleet serve --host 0.0.0.0 --port 8080 --workers 4",
    ),
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@_setting("--threads", "FLEET_SERVE_THREADS", 4, (1, 64), "Request-handling threads per worker.")
@_setting(
    "--max-connections",
    "FLEET_SERVE_MAX_CONNECTIONS",
    1000,
    (16, 10_000),
    "Open connections per worker; beyond, new ones wait in the listen queue.",
)
@_setting(
    "--header-timeout",
    "FLEET_SERVE_HEADER_TIMEOUT",
    10,
    (1, 300),
    "Seconds a client has to send a request's headers; then 408 and closed.",
)
@_setting(
    "--body-timeout",
    "FLEET_SERVE_BODY_TIMEOUT",
    30,
    (1, 600),
    "Seconds a client has to send a request's body after its headers.",
)
@_setting(
    "--keepalive",
    "FLEET_SERVE_KEEPALIVE",
    5,
    (0, 300),
    "Seconds an idle kept-alive connection stays open (0: close after each answer).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    threads: int,
    max_connections: int,
    header_timeout: int,
    body_timeout: int,
    keepalive: int,
) -> None:
    from gunicorn.app.base import BaseApplication

    from fleet.access_log import RedactingLogger
    from fleet.metrics import prepare_multiprocess_dir, worker_exited
    from fleet.serving import BufferingWorker

    settings = load_settings()
    # Before anything counts: the workers it forks write their metrics there (fleet.metrics).
    prepare_multiprocess_dir(settings.data_dir)
    build_services(settings)  # fail here, clearly, if `fleet init` has not run
    _raise_open_file_limit(workers * max_connections + 256)

    class Worker(BufferingWorker):
        pass

    Worker.header_timeout = float(header_timeout)
    Worker.body_timeout = float(body_timeout)
    Worker.max_body_bytes = settings.max_request_bytes

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", Worker)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_connections", max_connections)
            self.cfg.set("keepalive", keepalive)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", RedactingLogger)  # no broker secret in the log
            self.cfg.set("graceful_timeout", 10)
            if control_socket is None:
                self.cfg.set("control_socket_disable", True)
            else:
                self.cfg.set("control_socket", str(control_socket))
            self.cfg.set("child_exit", lambda _server, worker: worker_exited(worker.pid))

        def load(self) -> Any:
            from fleet.app import create_app

            return create_app(settings)

    control_socket = control_socket_path(settings.data_dir)
    click.echo(
        f"fleet serving on http://{host}:{port} with {workers} worker(s) of {threads} thread(s)",
        err=True,
    )
    if control_socket is None:
        click.echo(
            f"gunicorn's control socket is off: {settings.data_dir / CONTROL_SOCKET} would be "
            f"longer than the {MAX_SOCKET_PATH_BYTES} bytes a socket path may have",
            err=True,
        )
    Server().run()


CONTROL_SOCKET = "gunicorn.ctl"
MAX_SOCKET_PATH_BYTES = 107  # sun_path holds 108 bytes on Linux, the last one a NUL


def control_socket_path(data_dir: Path) -> Path | None:
    """gunicorn's control socket, in this server's own data directory (gunicorn's default,
    ``~/.gunicorn/gunicorn.ctl``, is one path for every server of a user: a second server took
    it over and the first to stop removed it). None when the path is too long for a socket."""
    path = Path(data_dir).absolute() / CONTROL_SOCKET
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES else None


def _raise_open_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (never past the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
