"""``zephyr serve --register NAME``: serve, and announce the instance while it serves.

The registry belongs to the resilience extra; it is found through the
``zephyr.register`` entry-point group (a callable ``(service, url)`` returning an async
context manager), so zephyr_core imports none of its siblings. The instance is
announced once uvicorn listens and withdrawn when it stops (Ctrl-C or SIGTERM); after
a SIGKILL the registry's TTL removes it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import entry_points
from typing import Any

import click

Registrar = Callable[[str, str], AbstractAsyncContextManager[Any]]


def load_registrar() -> Registrar:
    """The registry's ``register`` callable; a usage error names the extra to install."""
    for entry in entry_points(group="zephyr.register", name="redis"):
        try:
            registrar: Registrar = entry.load()
        except ImportError:
            break
        return registrar
    raise click.UsageError(
        "--register needs the resilience extra: pip install 'zephyr-infra[resilience]'"
    )


def advertised_url(host: str, port: int, advertise: str | None) -> str:
    """The URL balancers should use: ``--advertise``, else this host and port."""
    if advertise:
        return advertise
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_registered(config: Any, service: str, url: str) -> None:
    """Run uvicorn with ``config``; announce ``url`` as ``service`` once it listens."""
    import uvicorn

    registrar = load_registrar()
    registration = registrar(service, url)  # bad names and URLs fail before serving

    def leave(signum: int, frame: object) -> None:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it
        # found: this one, which unwinds through the registration instead of dying.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)

    async def main() -> None:
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():
            await serving
            return
        async with registration:
            await serving

    asyncio.run(main())
