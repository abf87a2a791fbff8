"""Helpers for tests that run `zephyr serve` / `zephyr up` as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
ZEPHYR = [sys.executable, "-m", "zephyr_core"]


class Process:
    """A `zephyr` subprocess in its own session, with its output collected to a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / f"zephyr-{free_port()}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*ZEPHYR, *args],
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Stop it the way a user would first (so `zephyr up` stops its children)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(list(args), env or {}, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def wait_for_http(url: str, process: Process, timeout: float = 20, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``; fail early if the process died."""

    def answers() -> bool:
        if process.proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{process.output()}")
        try:
            return httpx.get(url, timeout=1).status_code == status
        except httpx.TransportError:
            return False

    wait_until(answers, timeout, url)
