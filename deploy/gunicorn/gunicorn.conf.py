"""gunicorn settings for running fleet directly:

    gunicorn -c deploy/gunicorn/gunicorn.conf.py 'fleet.app:create_app()'

``fleet serve`` applies the same settings. Sync workers: the token endpoint is CPU-bound and
short (see bench/README.md); each worker opens its own database pool and broker connection.
"""

import multiprocessing

bind = "127.0.0.1:8080"
workers = min(8, multiprocessing.cpu_count() * 2)
worker_class = "sync"
accesslog = "-"
# The broker secret may come in the URL (?secret=): the log writes it as [redacted].
logger_class = "fleet.access_log.RedactingLogger"
graceful_timeout = 10
timeout = 30
# The app is built in each worker, after fork: no connection is shared across processes.
preload_app = False
# gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which two
# servers on one host would share; `fleet serve` puts it in the data directory. Here it is off:
# set control_socket to a path of this server's own to use it.
control_socket_disable = True


# /metrics across workers (fleet/metrics.py): each worker writes its counters to files in the
# data directory's metrics/, emptied here before any worker starts; a dead worker's live gauges
# are removed when it exits. `fleet serve` does the same.
def on_starting(server):
    import os
    from pathlib import Path

    from fleet.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(Path(os.environ.get("FLEET_DATA_DIR", "fleet-data")))


def child_exit(server, worker):
    from fleet.metrics import worker_exited

    worker_exited(worker.pid)
