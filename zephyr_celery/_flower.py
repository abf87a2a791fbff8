"""Flower, the Celery monitor, started on our app with authentication where it matters.

Flower listens on every interface by default and has no login unless told; we listen on
127.0.0.1 by default and refuse any other address unless FLOWER_BASIC_AUTH is set.
Flower's REST API (``/api/...``) answers only when authentication is configured (or
``FLOWER_UNAUTHENTICATED_API=true``); its web pages show broker and backend URLs with
the password masked, and ``/healthcheck`` answers without login for probes.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from zephyr_core import ConfigError, Settings

DEFAULT_PORT = 5555
DEFAULT_ADDRESS = "127.0.0.1"


def is_loopback_address(address: str) -> bool:
    """True when ``address`` only accepts connections from this machine."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: may resolve anywhere
        return False


def check_exposure(address: str, settings: Settings) -> None:
    """Refuse to serve Flower beyond this machine without a login.

    Raises:
        ConfigError: ``address`` is not a loopback address and FLOWER_BASIC_AUTH is unset.
    """
    if settings.FLOWER_BASIC_AUTH is None and not is_loopback_address(address):
        shown = address or "every interface"
        raise ConfigError(
            f"refusing to serve Flower on {shown} without authentication: set "
            "FLOWER_BASIC_AUTH=user:password, or keep --address 127.0.0.1",
            field="FLOWER_BASIC_AUTH",
        )


def flower_argv(settings: Settings, *, port: int, address: str) -> list[str]:
    """The ``celery flower`` arguments for ``settings`` (after :func:`check_exposure`).

    The password travels inside this process only (``app.start(argv)``), never on a
    command line other users could read with ``ps``.
    """
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if settings.FLOWER_BASIC_AUTH is not None:
        argv.append(f"--basic-auth={settings.FLOWER_BASIC_AUTH.get_secret_value()}")
    return argv


def run_flower(app: Any, settings: Settings, *, port: int, address: str) -> int:
    """Serve Flower for ``app`` in this process until SIGINT/SIGTERM; return its exit code.

    Raises:
        ConfigError: see :func:`check_exposure`.
    """
    check_exposure(address, settings)
    transport = app.conf.broker_transport
    if isinstance(transport, str) and transport.startswith("zephyr_celery."):
        # Flower knows brokers by URL scheme (its Broker page, queue lengths). Our
        # Redis transport differs from kombu's only in how a consumer takes a
        # message, which Flower never does: it watches events and sends commands.
        app.conf.broker_transport = None
    code = app.start(flower_argv(settings, port=port, address=address))
    return int(code or 0)


def flower_url(address: str, port: int) -> str:
    """The URL a browser on this machine opens for Flower served on ``address:port``."""
    host = "127.0.0.1" if address in ("", "0.0.0.0") else address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"
