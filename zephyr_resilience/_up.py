"""The processes ``zephyr up`` adds for local services: SERVICE_REGISTRY entries with an app.

Loaded through the ``zephyr.up`` entry-point group. An entry like
``{"url": "http://127.0.0.1:8001", "app": "examples.inventory.app:app"}`` is a service
this machine runs: ``zephyr up`` starts it with ``zephyr serve`` on that host and port,
ready once its ``/health/live`` answers. Entries on other hosts are only called.
"""

from __future__ import annotations

import sys

import httpx

from zephyr_core import ConfigError, Settings
from zephyr_core._imports import BadImportPath, split_import_path
from zephyr_core._probes import http_probe, local_url
from zephyr_core._supervisor import ProcessSpec
from zephyr_resilience._endpoints import parse_entry

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def processes(settings: Settings, options: dict[str, object]) -> list[ProcessSpec]:
    """One ``zephyr serve`` per local SERVICE_REGISTRY entry that names an app."""
    specs: list[ProcessSpec] = []
    for service, entries in settings.SERVICE_REGISTRY.items():
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or "app" not in entry:
                continue
            app = entry["app"]
            try:
                split_import_path(app, option=f"SERVICE_REGISTRY[{service!r}]", attribute=True)
            except BadImportPath as exc:
                raise ConfigError(str(exc), field="SERVICE_REGISTRY") from None
            url = httpx.URL(parse_entry(service, entry).url)
            if url.host not in _LOOPBACK:
                continue  # another machine runs it
            port = url.port or 80
            name = service if len(entries) == 1 else f"{service}-{number}"
            specs.append(
                ProcessSpec(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "zephyr_core",
                        "serve",
                        "--app",
                        app,
                        "--host",
                        url.host,
                        "--port",
                        str(port),
                    ],
                    probe=http_probe(local_url(url.host, port, "/health/live")),
                    url=local_url(url.host, port),
                )
            )
    return specs
