"""The processes ``zephyr up`` adds for jobs: a worker, beat and Flower.

Loaded through the ``zephyr.up`` entry-point group. Each process is the matching
``zephyr jobs`` command run by this interpreter, so ``zephyr up`` runs exactly what
a deployment would, with the Redis that ``zephyr up`` chose passed in the environment.
"""

from __future__ import annotations

import os
import sys

import click

from zephyr_celery._flower import DEFAULT_PORT, flower_url, is_loopback_address
from zephyr_core import Settings
from zephyr_core._supervisor import ProcessSpec


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
    """
    module = options.get("jobs_module") or os.environ.get("ZEPHYR_JOBS")
    if not module:
        return []
    host = str(options.get("host") or "127.0.0.1")
    address = flower_address(settings, host)
    port = int(os.environ.get("FLOWER_PORT") or DEFAULT_PORT)
    if not _port_free(address, port):
        taken, port = port, _free_port(address)
        click.secho(f"flower: port {taken} is taken; using {port}", fg="yellow")
    click.secho(f"flower: {flower_url(address, port)}  (jobs dashboard)", fg="green")
    return job_processes(str(module), flower_address=address, flower_port=port)


def job_processes(module: str, *, flower_address: str, flower_port: int) -> list[ProcessSpec]:
    """Worker, beat and Flower on ``module``: each a ``zephyr jobs`` command of this interpreter.

    ``zephyr up`` runs them; ``zephyr docker compose`` turns the same specs into services.
    """
    jobs = [sys.executable, "-m", "zephyr_core", "jobs"]
    flower = [*jobs, "flower", "-A", module, "--port", str(flower_port)]
    return [
        ProcessSpec("worker", [*jobs, "worker", "-A", module]),
        ProcessSpec("beat", [*jobs, "scheduler", "-A", module]),
        ProcessSpec(
            "flower",
            [*flower, "--address", flower_address],
            port=flower_port,
            health="/healthcheck",
        ),
    ]
