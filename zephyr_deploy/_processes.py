"""The one process list: what ``zephyr up`` runs is what the containers run.

``zephyr up`` builds its processes with ``zephyr_core``'s ``web_process`` and
``zephyr_celery``'s ``job_processes``; this module calls the same two functions and
turns each spec into a container process: ``zephyr ...`` instead of
``python -m zephyr_core ...``, listening on every interface inside the container,
with a health check built from the spec's port and health path. The Dockerfile's
``CMD``, the compose services and (later) the chart's values all come from here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from zephyr_core._supervisor import ProcessSpec
from zephyr_core._up_cli import web_process

#: Where the web process listens inside its container.
WEB_PORT = 8000
#: Where Flower listens inside its container.
FLOWER_PORT = 5555
#: Every interface of the container: its network namespace is the boundary.
CONTAINER_HOST = "0.0.0.0"
#: Seconds a worker gets between SIGTERM and SIGKILL: Celery's warm shutdown lets
#: running jobs finish, so this is the longest job you want to survive a deploy.
WORKER_STOP_GRACE = 120
#: Seconds anything else gets (Docker's default is 10).
STOP_GRACE = 15


@dataclass(frozen=True)
class ContainerProcess:
    """One process of the stack as a container runs it."""

    name: str
    command: tuple[str, ...]
    port: int | None
    #: The health check, in the exec form (``CMD``, then argv) Docker and compose take.
    health: tuple[str, ...]
    stop_grace: int


def http_check(port: int, path: str) -> tuple[str, ...]:
    """A health check that needs no curl: the image's own Python fetches the URL.

    ``urlopen`` raises on a refused connection, a timeout or any status >= 400, so
    the exit status is 0 only for a 2xx/3xx answer.
    """
    script = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)"
    )
    return ("CMD", "python", "-c", script)


def _container_argv(spec: ProcessSpec) -> tuple[str, ...]:
    argv = spec.argv
    if argv[:3] == [sys.executable, "-m", "zephyr_core"]:
        return ("zephyr", *argv[3:])
    raise ValueError(f"process {spec.name!r} is not a zephyr command: {argv}")


def _health(spec: ProcessSpec, jobs_module: str | None) -> tuple[str, ...]:
    if spec.port is not None and spec.health is not None:
        return http_check(spec.port, spec.health)
    # No HTTP port: ask the broker (worker) or Redis (beat); see zephyr_deploy._probe.
    return ("CMD", "zephyr", "docker", "probe", spec.name, "-A", str(jobs_module))


def container_processes(app: str, jobs_module: str | None) -> list[ContainerProcess]:
    """web, then worker, beat and Flower when there is a jobs module, as containers run them.

    Raises:
        DeployError: a jobs module is given but the ``jobs`` extra is not installed.
    """
    specs = [web_process(app, CONTAINER_HOST, WEB_PORT)]
    if jobs_module:
        try:
            from zephyr_celery._up import job_processes
        except ImportError as exc:
            from zephyr_deploy._exceptions import DeployError

            raise DeployError(
                f"-A {jobs_module}: the worker, beat and Flower need the 'jobs' extra "
                f"({exc.name} is not installed): pip install 'zephyr-infra[jobs,flower]'"
            ) from None
        specs += job_processes(jobs_module, flower_address=CONTAINER_HOST, flower_port=FLOWER_PORT)
    return [
        ContainerProcess(
            name=spec.name,
            command=_container_argv(spec),
            port=spec.port,
            health=_health(spec, jobs_module),
            stop_grace=WORKER_STOP_GRACE if spec.name == "worker" else STOP_GRACE,
        )
        for spec in specs
    ]


def web(app: str) -> ContainerProcess:
    """The web process alone: the Dockerfile's CMD and HEALTHCHECK."""
    return container_processes(app, None)[0]
