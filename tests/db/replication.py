"""A private PostgreSQL primary with streaming replicas, for the zephyr_db tests.

The primary is made with ``initdb``; each replica is a ``pg_basebackup -R`` copy of it
(with its own replication slot, so a stopped replica catches up when started again),
running on its own free port. Everything runs as the ``postgres`` user when the tests
run as root, in a temporary directory that user owns. Tests stop, kill, pause and
promote these servers for real.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import PostgresServer, wait_until


def postgres_tmpdir(prefix: str) -> Path:
    """A temporary directory the ``postgres`` user can use (pytest's is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


class Primary(PostgresServer):
    """The primary: replication allowed from 127.0.0.1 (initdb's default pg_hba)."""

    def start(self) -> None:
        super().start()
        wait_until(lambda: self.accepts(), 10, f"primary on {self.port}")

    def accepts(self) -> bool:
        done = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return done.returncode == 0


class Replica(Primary):
    """A streaming replica of ``primary`` (a hot standby that answers reads)."""

    def __init__(self, directory: Path, primary: PostgresServer, slot: str) -> None:
        super().__init__(directory)
        self.primary = primary
        self.slot = slot

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            as_user = self._run_as()
            subprocess.run(
                ["pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                 "-U", self.primary.user, "-D", str(self.data), "-R", "-X", "stream",
                 "-C", "-S", self.slot, "--checkpoint=fast"],
                check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
            )  # fmt: skip
        super().start()

    def promote(self) -> None:
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-w", "promote"],
            check=True, capture_output=True, **self._run_as(),  # type: ignore[call-overload]
        )  # fmt: skip

    def replay(self, paused: bool) -> None:
        """Pause or resume WAL replay (received WAL keeps arriving)."""
        self.psql(f"SELECT pg_wal_replay_{'pause' if paused else 'resume'}()")

    def streaming(self) -> bool:
        return (
            self.psql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") == "1"
        )


class ReplicationSet:
    """A primary and ``replicas`` streaming replicas, each on its own free port."""

    def __init__(self, replicas: int) -> None:
        self.root = postgres_tmpdir("zephyr-db-")
        self.primary = Primary(self.root / "primary")
        self.replicas = [
            Replica(self.root / f"replica{n}", self.primary, f"replica{n}")
            for n in range(1, replicas + 1)
        ]

    def start(self) -> None:
        self.primary.start()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            wait_until(replica.streaming, 20, f"replica on {replica.port} to stream")

    def stop(self) -> None:
        for server in (*self.replicas, self.primary):
            server.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, server: PostgresServer) -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/postgres"

    def wait_replicated(self, sql: str, expected: str, timeout: float = 10) -> None:
        """Wait until every running replica answers ``sql`` with ``expected``."""
        for replica in self.replicas:
            wait_until(
                lambda r=replica: r.psql(sql) == expected, timeout, f"{sql} on {replica.port}"
            )


def available() -> bool:
    return all(shutil.which(tool) for tool in ("initdb", "pg_ctl", "pg_basebackup", "psql"))


def started(replicas: int) -> ReplicationSet:
    began = time.monotonic()
    servers = ReplicationSet(replicas)
    servers.start()
    servers.started_in = time.monotonic() - began  # type: ignore[attr-defined]
    return servers
