"""``zephyr up``: the whole stack in the foreground, on an embedded Valkey if need be."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import click

from zephyr_core._imports import split_import_path
from zephyr_core._probes import http_probe, local_url
from zephyr_core._serve_cli import ensure_port_free
from zephyr_core._settings import Settings, get_settings
from zephyr_core._supervisor import ProcessSpec, Supervisor
from zephyr_core._valkey import forget_running, plan_redis, record_running

# A package adds its processes (worker, beat, Flower, ...) through the ``zephyr.up``
# entry-point group: a callable (settings, options) -> list[ProcessSpec].
UpProvider = Callable[[Settings, dict[str, object]], list[ProcessSpec]]


def web_process(
    app_path: str, host: str, port: int, *, env: dict[str, str] | None = None
) -> ProcessSpec:
    """The web process: ``zephyr serve`` on ``app_path``, run by this interpreter.

    ``zephyr up`` runs it; ``zephyr docker compose`` turns the same spec into a service.
    """
    argv = [sys.executable, "-m", "zephyr_core", "serve", "--app", app_path]
    return ProcessSpec(
        "web",
        [*argv, "--host", host, "--port", str(port)],
        dict(env or {}),
        port=port,
        health="/health/live",
        probe=http_probe(local_url(host, port, "/health/ready")),
        url=local_url(host, port),
    )


@click.command()
@click.option("--app", "app_path", help="ASGI app as module:attribute (default: ZEPHYR_APP).")
@click.option("-A", "--jobs", "jobs_module", help="Module defining the jobs (for the worker).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    default=".zephyr",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the embedded Valkey keeps its data.",
)
def up(app_path: str | None, jobs_module: str | None, host: str, port: int, data_dir: Path) -> None:
    """Run the whole stack locally: web, plus worker, beat and Flower when installed."""
    settings = get_settings()
    app_path = app_path or settings.ZEPHYR_APP
    if not app_path:
        raise click.UsageError("no app: pass --app module:attribute or set ZEPHYR_APP")
    # Malformed paths are usage errors now, before any process (or Valkey) starts.
    split_import_path(app_path, option="--app", attribute=True)
    if jobs_module:
        split_import_path(jobs_module, option="-A/--jobs", attribute=None)
    ensure_port_free(host, port)
    redis = plan_redis(settings, data_dir / "valkey")
    click.secho(redis.message, fg="green")
    record = None
    try:
        record = record_running(redis)
        child_settings = Settings(**redis.env) if redis.env else settings
        specs = [web_process(app_path, host, port, env=redis.env)]
        options: dict[str, object] = {"jobs_module": jobs_module, "host": host, "port": port}
        for entry in entry_points(group="zephyr.up"):
            try:
                provider: UpProvider = entry.load()
            except ImportError:  # that package's extra is not installed
                continue
            for spec in provider(child_settings, options):
                spec.env = {**redis.env, **spec.env}
                specs.append(spec)
        click.secho(
            f"web: http://{host}:{port}  (health: /health/ready, metrics: /metrics)", fg="green"
        )
        sys.exit(Supervisor(specs).run())
    finally:
        forget_running(record)
        redis.stop()  # last: the worker's warm shutdown still needed it
