"""Real backend processes for the balancer tests and benchmarks: uvicorn, free to kill or freeze."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]


class Backend:
    """One ``tests.resilience.backend`` process on a free port."""

    def __init__(self, delay_ms: float = 0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.delay_ms = delay_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Backend:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.resilience.backend", str(self.port), str(self.delay_ms)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        wait_until(lambda: port_open(self.port), 20, f"backend on port {self.port}")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
