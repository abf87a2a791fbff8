"""``zephyr serve``: uvicorn with the app wrapped in health routes and /metrics."""

from __future__ import annotations

import errno
import os
import socket

import click

from zephyr_core._exceptions import ConfigError, ZephyrError
from zephyr_core._settings import get_settings


class PortInUse(ZephyrError):
    """The address ``zephyr serve`` should listen on is taken."""


def ensure_port_free(host: str, port: int) -> None:
    """Fail with one clear line when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use") from None
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command()
@click.option("--app", "app_path", help="ASGI app as module:attribute (default: ZEPHYR_APP).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1))
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--register",
    "register_as",
    metavar="NAME",
    help="Announce this instance as service NAME in the service registry (resilience extra).",
)
@click.option("--advertise", metavar="URL", help="URL to announce (default: http://HOST:PORT).")
def serve(
    app_path: str | None,
    host: str,
    port: int,
    workers: int,
    reload: bool,
    log_level: str,
    register_as: str | None = None,
    advertise: str | None = None,
) -> None:
    """Serve an ASGI app with /health, /health/live, /health/ready and /metrics."""
    import uvicorn

    from zephyr_core._asgi import load_app, wrap

    app_path = app_path or get_settings().ZEPHYR_APP
    if not app_path:
        raise click.UsageError("no app: pass --app module:attribute or set ZEPHYR_APP")
    try:
        app = load_app(app_path)  # import it here so a bad path is one clear line
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    ensure_port_free(host, port)
    if register_as:
        from zephyr_core._serve_register import advertised_url, serve_registered

        if workers != 1 or reload:
            raise click.UsageError("--register works with one worker and without --reload")
        config = uvicorn.Config(wrap(app), host=host, port=port, log_level=log_level)
        try:
            serve_registered(config, register_as, advertised_url(host, port, advertise))
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        return
    if workers == 1 and not reload:
        uvicorn.run(wrap(app), host=host, port=port, log_level=log_level)
        return
    os.environ["ZEPHYR_APP"] = app_path
    uvicorn.run(
        "zephyr_core._asgi:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        log_level=log_level,
    )
