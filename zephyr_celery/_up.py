"""The processes ``zephyr up`` adds for jobs: a worker, beat and Flower.

Loaded through the ``zephyr.up`` entry-point group. Each process is the matching
``zephyr jobs`` command run by this interpreter, so ``zephyr up`` runs exactly what
a deployment would, with the Redis that ``zephyr up`` chose passed in the environment.

Each comes with its readiness signal, for ``zephyr up``'s one "ready" line: the
worker answers a remote-control ping (what ``celery inspect ping`` sends), beat has
logged that it holds its lock (a standby beat never does), Flower's ``/healthcheck``
answers ``OK``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from zephyr_celery._flower import DEFAULT_PORT, flower_url, is_loopback_address
from zephyr_core import ConfigError, Settings
from zephyr_core._imports import split_import_path
from zephyr_core._probes import http_probe
from zephyr_core._supervisor import ProcessSpec

#: What redbeat logs once this beat holds the scheduling lock and sends jobs.
BEAT_READY_LINE = "beat: Acquired lock"


def _port_free(host: str, port: int) -> bool:
    from zephyr_core._serve_cli import PortInUse, ensure_port_free

    try:
        ensure_port_free(host, port)
    except PortInUse:
        return False
    return True


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def flower_address(settings: Settings, host: str) -> str:
    """Where Flower listens: beside the web app, but only on loopback without a login."""
    if is_loopback_address(host) or settings.FLOWER_BASIC_AUTH is not None:
        return host
    return "127.0.0.1"


def worker_probe(settings: Settings) -> Callable[[], bool]:
    """A probe that passes once the worker answers a ping: by Celery's default name,
    or, where ``zephyr jobs worker`` runs a process per core, by its first one's.

    The ping goes over the broker ``settings`` name, as ``celery inspect ping`` does.
    The app is built on the first call (importing Celery takes a while), and closed
    once the worker answered.
    """
    apps: list[Any] = []

    def probe() -> bool:
        from celery.utils.nodenames import default_nodename, host_format

        from zephyr_celery._app import create_app
        from zephyr_celery._processes import worker_name

        if not apps:
            apps.append(create_app(settings))
        names = [default_nodename(None), host_format(worker_name(None, 1))]
        replies = apps[0].control.ping(destination=names, timeout=1.0, limit=1)
        if replies:
            apps.pop().close()
        return bool(replies)

    return probe


def flower_port() -> int:
    """FLOWER_PORT (5555 by default), checked: a bad one is a one-line ConfigError."""
    raw = os.environ.get("FLOWER_PORT") or str(DEFAULT_PORT)
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
        raise ConfigError(f"FLOWER_PORT={raw!r}: expected a port number between 1 and 65535")
    return int(raw)


def processes(settings: Settings, options: dict[str, object]) -> list[ProcessSpec]:
    """Worker, beat and Flower for ``zephyr up`` when a jobs module is given.

    Args:
        settings: The settings the children run with (Redis URLs already chosen).
        options: ``zephyr up``'s options: ``jobs_module`` (``-A``; else ZEPHYR_JOBS),
            ``host`` and ``port`` of the web app.

    Returns:
        No process without a jobs module; otherwise the worker, the scheduler and
        Flower, whose URL is printed (on FLOWER_PORT, 5555 by default, or a free
        port when that one is taken).

    Raises:
        ConfigError: FLOWER_PORT is not a port number, or the jobs module's name is
            malformed (both exit 2 before anything starts).
    """
    module = options.get("jobs_module") or os.environ.get("ZEPHYR_JOBS")
    if not module:
        return []
    split_import_path(str(module), option="-A/--jobs (or ZEPHYR_JOBS)", attribute=None)
    host = str(options.get("host") or "127.0.0.1")
    address = flower_address(settings, host)
    port = flower_port()
    if not _port_free(address, port):
        taken, port = port, _free_port(address)
        click.secho(f"flower: port {taken} is taken; using {port}", fg="yellow")
    click.secho(f"flower: {flower_url(address, port)}  (jobs dashboard)", fg="green")
    return job_processes(str(module), flower_address=address, flower_port=port, settings=settings)


def job_processes(
    module: str, *, flower_address: str, flower_port: int, settings: Settings | None = None
) -> list[ProcessSpec]:
    """Worker, beat and Flower on ``module``: each a ``zephyr jobs`` command of this interpreter.

    ``zephyr up`` runs them (with ``settings``, the worker gets a readiness probe);
    ``zephyr docker compose`` turns the same specs into services.
    """
    jobs = [sys.executable, "-m", "zephyr_core", "jobs"]
    flower = [*jobs, "flower", "-A", module, "--port", str(flower_port)]
    url = flower_url(flower_address, flower_port)
    return [
        ProcessSpec(
            "worker",
            [*jobs, "worker", "-A", module],
            probe=None if settings is None else worker_probe(settings),
        ),
        ProcessSpec("beat", [*jobs, "scheduler", "-A", module], ready_line=BEAT_READY_LINE),
        ProcessSpec(
            "flower",
            [*flower, "--address", flower_address],
            port=flower_port,
            health="/healthcheck",
            probe=http_probe(f"{url}/healthcheck", body="OK"),
            url=url,
        ),
    ]
