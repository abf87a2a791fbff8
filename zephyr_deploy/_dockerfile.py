"""``zephyr docker init``: a Dockerfile and a .dockerignore for the project in a folder.

Compared with ``docker init``'s Python template: the same multi-stage shape, plus
the dependency file the project actually has (uv, Poetry, pip), a user with fixed
ids that owns no file, a health check that needs no curl, and the command that
``zephyr up`` runs for the web process (from the one process list).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from zephyr_core import __version__
from zephyr_deploy._processes import WEB_PORT, web
from zephyr_deploy._project import Project
from zephyr_deploy._templates import render

#: Installer versions the Dockerfile pins (pip installs them in the builder stage).
UV_VERSION = "0.13.8"
POETRY_VERSION = "2.5.1"


def running_python() -> str:
    """``major.minor`` of this interpreter: the default base image's version."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class DockerfileOptions:
    """What ``zephyr docker init`` was asked for."""

    app: str
    python: str
    extras: tuple[str, ...] = ()

    def command(self) -> str:
        """The command line that writes these files, for their header."""
        argv = ["zephyr", "docker", "init", "--app", self.app, "--python", self.python]
        for extra in self.extras:
            argv += ["--extra", extra]
        return shlex.join(argv)


def render_dockerfile(project: Project, options: DockerfileOptions) -> str:
    """The Dockerfile's text."""
    process = web(options.app)
    return render(
        "Dockerfile.j2",
        command=options.command(),
        zephyr_version=__version__,
        dependencies=project.dependencies,
        python=options.python,
        extras=options.extras,
        uv_version=UV_VERSION,
        poetry_version=POETRY_VERSION,
        name=project.name,
        version=project.version,
        source_url=project.source_url,
        app_paths=project.app_paths,
        port=WEB_PORT,
        health=process.health[1:],
        cmd=process.command,
    )


def render_dockerignore(options: DockerfileOptions) -> str:
    """The .dockerignore's text."""
    return render("dockerignore.j2", command=options.command(), zephyr_version=__version__)
