"""``zephyr docker``: init, compose, build, run, push (and ``probe`` for health checks).

This module imports nothing beyond click and zephyr_core at load time, so the
``probe`` health check works in an image that has neither Jinja2 nor the docker SDK.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from zephyr_core import ConfigError, Settings, get_settings
from zephyr_core.cli import require_modules
from zephyr_deploy._exceptions import DeployError

DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
COMPOSE_FILE = "docker-compose.yml"


@click.group()
def docker() -> None:
    """Containers: write a Dockerfile and a compose file; build, run and push the image."""


def _app_option(function: Any) -> Any:
    return click.option(
        "--app", "app_path", help="ASGI app as module:attribute (default: ZEPHYR_APP)."
    )(function)


def _checked_app(app_path: str | None, settings: Settings, root: Path) -> str:
    """The app path, checked to import as an ASGI app from ``root`` (exit 2 if not)."""
    from zephyr_core._asgi import load_app

    app_path = app_path or settings.ZEPHYR_APP
    if not app_path:
        raise click.UsageError("no app: pass --app module:attribute or set ZEPHYR_APP")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        load_app(app_path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return app_path


def _settings() -> Settings:
    return get_settings()


@docker.command()
@_app_option
@click.option(
    "--python",
    "python_version",
    metavar="X.Y",
    help="Python of the base image, python:X.Y-slim (default: the running one).",
)
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="An extra of the project to install (pyproject.toml, setup.cfg, uv, Poetry); repeat.",
)
@click.option("--source", "source_url", help="Source URL for the image label.")
@click.option("--force", is_flag=True, help="Overwrite an existing Dockerfile/.dockerignore.")
def init(
    app_path: str | None,
    python_version: str | None,
    extras: tuple[str, ...],
    source_url: str | None,
    force: bool,
) -> None:
    """Write a Dockerfile and a .dockerignore for the project in this folder."""
    import re

    require_modules("docker", "jinja2")

    from zephyr_deploy._dockerfile import (
        DockerfileOptions,
        render_dockerfile,
        render_dockerignore,
        running_python,
    )
    from zephyr_deploy._files import check_writable, write_all
    from zephyr_deploy._project import inspect_project

    root = Path.cwd()
    python_version = python_version or running_python()
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise click.BadParameter(
            f"{python_version!r}: expected a Python version like 3.12", param_hint="--python"
        )
    for extra in extras:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", extra):
            raise click.BadParameter(f"{extra!r} is not an extra's name", param_hint="--extra")
    app_path = app_path or _settings().ZEPHYR_APP
    if not app_path:
        raise click.UsageError("no app: pass --app module:attribute or set ZEPHYR_APP")
    project = inspect_project(root, app_path, source_url=source_url)
    if extras and project.dependencies == "requirements.txt":
        raise click.BadParameter(
            "requirements.txt has no extras: list those packages in it", param_hint="--extra"
        )
    _checked_app(app_path, _settings(), root)
    options = DockerfileOptions(app=app_path, python=python_version, extras=tuple(extras))
    files = {
        root / DOCKERFILE: render_dockerfile(project, options),
        root / DOCKERIGNORE: render_dockerignore(options),
    }
    problems = []
    for path, content in list(files.items()):
        try:
            if not check_writable(path, content, force=force):
                del files[path]
        except DeployError as exc:
            problems.append(str(exc))
    if problems:
        raise DeployError("; ".join(problems))
    write_all(files)
    click.echo(f"dependencies from {project.dependencies}")
    if files:
        click.secho(f"wrote {', '.join(p.name for p in files)}", fg="green")
    else:
        click.echo("Dockerfile and .dockerignore are up to date")
    if project.source_url == "unknown":
        click.secho(
            "note: no source URL in the project's metadata: the image label says 'unknown' "
            "(pass --source URL)",
            fg="yellow",
        )


@docker.command()
@_app_option
@click.option("-A", "--jobs", "jobs_module", help="Jobs module (default: ZEPHYR_JOBS).")
@click.option(
    "--with-postgres", is_flag=True, help="Add PostgreSQL (implied when DATABASE_URL is set)."
)
@click.option("--force", is_flag=True, help="Overwrite a docker-compose.yml edited by hand.")
def compose(
    app_path: str | None, jobs_module: str | None, with_postgres: bool, force: bool
) -> None:
    """Write docker-compose.yml: web, worker, beat, Flower, Redis (and PostgreSQL)."""
    import os

    require_modules("docker", "jinja2")

    from zephyr_deploy._compose import ComposeOptions, render_compose
    from zephyr_deploy._files import check_writable, write_all
    from zephyr_deploy._image import image_reference
    from zephyr_deploy._project import project_name

    root = Path.cwd()
    settings = _settings()
    jobs_module = jobs_module or os.environ.get("ZEPHYR_JOBS")
    app_path = _checked_app(app_path, settings, root)
    if jobs_module:
        _check_jobs_module(jobs_module)
    options = ComposeOptions(
        app=app_path,
        jobs_module=jobs_module,
        image=image_reference(settings, project_name(root)),
        postgres=with_postgres or settings.DATABASE_URL is not None,
    )
    path = root / COMPOSE_FILE
    content = render_compose(options)
    if check_writable(path, content, force=force, replace_unedited=True):
        write_all({path: content})
        click.secho(f"wrote {COMPOSE_FILE}", fg="green")
    else:
        click.echo(f"{COMPOSE_FILE} is up to date")
    if jobs_module and settings.FLOWER_BASIC_AUTH is None:
        click.secho(
            "note: FLOWER_BASIC_AUTH is not set in .env: Flower will refuse to start "
            "in its container until it is (user:password)",
            fg="yellow",
        )


def _check_jobs_module(jobs_module: str) -> None:
    from zephyr_core._imports import ModuleImportFailed, ModuleMissing, import_user_module

    try:
        import_user_module(jobs_module.partition(":")[0], option=f"-A {jobs_module!r}")
    except (ModuleMissing, ModuleImportFailed) as exc:
        raise click.UsageError(str(exc)) from None


def _image(tag: str | None) -> str:
    require_modules("docker", "docker")
    from zephyr_deploy._image import image_reference
    from zephyr_deploy._project import project_name

    return image_reference(_settings(), project_name(Path.cwd()), tag=tag)


@docker.command()
@click.option("--tag", help="Image tag (default: CONTAINER_TAG).")
def build(tag: str | None) -> None:
    """Build CONTAINER_REGISTRY/name:CONTAINER_TAG from ./Dockerfile."""
    from rich.console import Console

    from zephyr_deploy import _engine

    image = _image(tag)  # a bad setting fails here, before any engine call
    root = Path.cwd()
    if not (root / DOCKERFILE).is_file():
        raise DeployError(f"no {DOCKERFILE} in {root}: run `zephyr docker init` first")
    engine = _engine.client()
    console = Console(highlight=False)
    with console.status(f"building {image}"):
        image_id = _engine.build(
            engine, root, image, lambda line: console.print(line, markup=False)
        )
    click.secho(f"built {image} ({image_id[:19] or 'no id'})", fg="green")


@docker.command()
@click.option("--tag", help="Image tag (default: CONTAINER_TAG).")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Host port."
)
@click.option(
    "--env-file",
    default=".env",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings and secrets passed to the container (skipped when absent).",
)
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(1))
def run(tag: str | None, port: int, env_file: Path, timeout: float) -> None:
    """Start the image, wait until its health check says healthy, print its URL."""
    from dotenv import dotenv_values

    from zephyr_deploy import _engine
    from zephyr_deploy._processes import WEB_PORT

    image = _image(tag)
    environment = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file.is_file()
        else {}
    )
    engine = _engine.client()
    container = _engine.run_detached(
        engine, image, port=WEB_PORT, host_port=port, environment=environment
    )
    click.echo(f"started {container.short_id} from {image}; waiting for it to be healthy")
    _engine.wait_healthy(container, timeout=timeout)
    click.secho(f"healthy: http://127.0.0.1:{port}  (stop: docker stop {container.short_id})")


@docker.command()
@click.option("--tag", help="Image tag (default: CONTAINER_TAG).")
def push(tag: str | None) -> None:
    """Push CONTAINER_REGISTRY/name:CONTAINER_TAG (credentials from `docker login`)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from zephyr_deploy import _engine

    image = _image(tag)
    if _settings().CONTAINER_REGISTRY is None:
        raise ConfigError(
            "CONTAINER_REGISTRY is not set: set it to the registry to push to, like ghcr.io/acme",
            field="CONTAINER_REGISTRY",
        )
    engine = _engine.client()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), transient=True
    ) as progress:
        layers: dict[str, Any] = {}

        def show(chunk: dict[str, Any]) -> None:
            layer, detail = chunk.get("id"), chunk.get("progressDetail") or {}
            if not layer or "status" not in chunk:
                return
            if layer not in layers:
                layers[layer] = progress.add_task(f"{layer} {chunk['status']}", total=None)
            progress.update(
                layers[layer],
                description=f"{layer} {chunk['status']}",
                completed=detail.get("current"),
                total=detail.get("total"),
            )

        _engine.push(engine, image, show)
    click.secho(f"pushed {image}", fg="green")


@docker.command(hidden=True)
@click.argument("process", type=click.Choice(["worker", "beat"]))
@click.option("-A", "--app", "jobs_module", required=True, envvar="ZEPHYR_JOBS")
def probe(process: str, jobs_module: str) -> None:
    """Health check of a worker or beat container (exit 0 when healthy)."""
    from zephyr_deploy._probe import probe_beat, probe_worker

    problem = probe_worker(jobs_module) if process == "worker" else probe_beat(jobs_module)
    if problem:
        raise DeployError(problem)
    click.echo(f"{process}: healthy")
