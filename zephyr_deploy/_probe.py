"""``zephyr docker probe worker|beat``: container health checks for processes without HTTP.

The web app and Flower answer HTTP health checks; a worker and beat do not listen on
a port, so their compose health checks run this instead:

- ``worker``: Celery's ``ping`` broadcast, addressed to the worker of this container
  (``celery@<hostname>``, the worker's default name, or ``zephyr1@<hostname>``, the
  first process of ``zephyr jobs worker`` on the async pool): healthy when it answers,
  which needs both the worker's consumer and the broker to be alive.
- ``beat``: the scheduler's Redis lock (redbeat's ``<prefix>:lock`` key, renewed on
  every tick) is held: some beat is alive and ticking. With one beat per stack that
  is this one.
"""

from __future__ import annotations

import socket

#: Seconds the worker has to answer a ping.
PING_TIMEOUT = 5.0


def probe_worker(jobs_module: str, *, hostname: str | None = None) -> str | None:
    """None when this container's worker answers a ping, else why not."""
    from zephyr_celery.cli import load_app

    app = load_app(jobs_module, required=True)
    host = hostname or socket.gethostname()
    names = [f"celery@{host}", f"zephyr1@{host}"]
    replies = app.control.ping(destination=names, timeout=PING_TIMEOUT)
    if not any(name in reply for reply in replies for name in names):
        return f"worker {names[0]} did not answer a ping within {PING_TIMEOUT:g} s"
    return None


def probe_beat(jobs_module: str) -> str | None:
    """None when the scheduler's lock is held in Redis, else why not."""
    from zephyr_celery._app import app_settings
    from zephyr_celery._beat import KEY_PREFIX
    from zephyr_celery.cli import load_app
    from zephyr_core._redis_clients import sync_client

    app = load_app(jobs_module, required=True)
    settings = app_settings(app)
    # A Sentinel URL: the client asks the Sentinels for the current master.
    topology = settings.redis_topology(settings.job_result_url)
    lock = f"{KEY_PREFIX}:lock"
    with sync_client(topology, socket_timeout=5, socket_connect_timeout=5) as client:
        if not client.exists(lock):
            return f"no scheduler holds the lock {lock!r}"
    return None
