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
graceful_timeout = 10
timeout = 30
# The app is built in each worker, after fork: no connection is shared across processes.
preload_app = False
# gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which two
# servers on one host would share; `fleet serve` puts it in the data directory. Here it is off:
# set control_socket to a path of this server's own to use it.
control_socket_disable = True
