"""``zephyr docker compose``: the whole stack ``zephyr up`` runs, as a compose file.

``docker init`` writes the app's container only; this writes web, worker, beat and
Flower (one image, four commands, from the one process list), Redis and, when the
app has a database, PostgreSQL, each with a health check, so that ``docker compose
up`` runs what ``zephyr up`` runs. Settings that describe the stack's own wiring
(Redis URLs, the app) are written as environment; everything else, and every
secret, comes from ``.env``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from zephyr_core import __version__
from zephyr_deploy._files import with_checksum
from zephyr_deploy._processes import container_processes
from zephyr_deploy._templates import render

REDIS_IMAGE = "redis:7.4-alpine"
POSTGRES_IMAGE = "postgres:17-alpine"


@dataclass(frozen=True)
class ComposeOptions:
    """What ``zephyr docker compose`` was asked for."""

    app: str
    jobs_module: str | None
    image: str
    postgres: bool = False

    def command(self) -> str:
        """The command line that writes this file, for its header."""
        argv = ["zephyr", "docker", "compose", "--app", self.app]
        if self.jobs_module:
            argv += ["-A", self.jobs_module]
        if self.postgres:
            argv.append("--with-postgres")
        return shlex.join(argv)


def stack_environment(options: ComposeOptions) -> dict[str, str]:
    """The settings that wire the stack together: no secret is among them."""
    environment = {
        "ZEPHYR_APP": options.app,
        "JOB_QUEUE_URL": "redis://redis:6379/0",
        "CACHE_URL": "redis://redis:6379/1",
    }
    if options.jobs_module:
        environment["ZEPHYR_JOBS"] = options.jobs_module
    return environment


def render_compose(options: ComposeOptions) -> str:
    """The compose file's text, its checksum line included."""
    text = render(
        "docker-compose.yml.j2",
        command=options.command(),
        zephyr_version=__version__,
        processes=container_processes(options.app, options.jobs_module),
        image=options.image,
        environment=stack_environment(options),
        backing=["redis", "postgres"] if options.postgres else ["redis"],
        postgres=options.postgres,
        redis_image=REDIS_IMAGE,
        postgres_image=POSTGRES_IMAGE,
    )
    header, marker, body = text.partition("services:\n")
    return with_checksum(header, marker + body)
