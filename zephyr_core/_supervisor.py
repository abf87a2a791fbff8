"""A small foreground supervisor for ``zephyr up``: start, prefix output, stop all.

Each child runs in its own session so a terminal's Ctrl-C reaches only us; we then
stop the children in order and wait for each, so no job or request is cut short.
Once every child passes its readiness probe, one "ready" line says so, with the URLs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import click

COLORS = ("cyan", "magenta", "yellow", "green", "blue", "bright_red")


@dataclass
class ProcessSpec:
    """One process of the stack: what ``zephyr up`` runs and a container runs.

    ``zephyr docker compose`` (and the chart) read the same list, so ``port`` and
    ``health`` live here too, even though the supervisor itself ignores them.

    Attributes:
        name: Its prefix in the output.
        argv: The command line.
        env: Variables added to this environment.
        port: The TCP port it listens on, if any.
        health: The HTTP path that answers 200 while it is alive, if it serves HTTP.
        probe: Called (in a background thread) until it returns True: the child is
            ready. An exception counts as "not yet".
        ready_line: Text that marks the child ready when a line of its output holds
            it, for children whose only signal is what they log.
        url: Where it serves, shown in the "ready" line.
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    health: str | None = None
    probe: Callable[[], bool] | None = None
    ready_line: str | None = None
    url: str | None = None


#: Seconds between looks at the stop flag a signal handler sets.
SIGNAL_CHECK_INTERVAL = 0.1
#: Seconds between two rounds of readiness probes.
PROBE_INTERVAL = 0.25
#: After this many seconds without every child ready, say which are not, once.
SLOW_START_AFTER = 60.0


class Supervisor:
    """Runs children in the foreground until Ctrl-C or until one of them dies."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        grace: float = 30.0,
        echo: Callable[[str], None] = click.echo,
    ) -> None:
        self.specs = specs
        self.grace = grace
        self.echo = echo
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop_requested = False
        self._finished = threading.Event()  # stopping, or a child died: probes end
        self._lines_seen: dict[str, bool] = {s.name: False for s in specs if s.ready_line}
        self._width = max((len(s.name) for s in specs), default=4)

    def _prefix(self, index: int, name: str) -> str:
        return click.style(f"{name:<{self._width}} |", fg=COLORS[index % len(COLORS)])

    def _pump(self, index: int, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = self._prefix(index, name)
        wanted = self.specs[index].ready_line
        with proc.stdout:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                self.echo(f"{prefix} {line}")
                if wanted is not None and wanted in line:
                    self._lines_seen[name] = True
        proc.wait()
        self._wake.set()

    def _is_ready(self, spec: ProcessSpec) -> bool:
        if spec.ready_line is not None and not self._lines_seen[spec.name]:
            return False
        if spec.probe is None:
            return True
        try:
            return bool(spec.probe())
        except Exception:  # a probe that raises means "not yet": the child is starting
            return False

    def _watch_readiness(self) -> None:
        """Probe every child until all are ready; then print the one "ready" line."""
        waiting = list(self.specs)
        started = time.monotonic()
        warned = False
        while waiting and not self._finished.is_set():
            waiting = [spec for spec in waiting if not self._is_ready(spec)]
            if waiting and not warned and time.monotonic() - started > SLOW_START_AFTER:
                warned = True
                names = ", ".join(spec.name for spec in waiting)
                self.echo(
                    click.style(f"not ready after {SLOW_START_AFTER:g}s: {names}", fg="yellow")
                )
            if waiting:
                self._finished.wait(PROBE_INTERVAL)
        if not waiting and not self._finished.is_set():
            self.echo(click.style(self.ready_message(), fg="green", bold=True))

    def ready_message(self) -> str:
        """``ready: web http://..., flower http://... (worker, beat)``."""
        urls = [f"{spec.name} {spec.url}" for spec in self.specs if spec.url]
        others = [spec.name for spec in self.specs if not spec.url]
        text = "ready: " + ", ".join(urls or others)
        return text + (f" ({', '.join(others)})" if urls and others else "")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: the handler runs in the main thread, possibly inside
        # Event.wait() while it holds the event's lock, so Event.set() here could
        # deadlock (it did: `zephyr up` then ignored SIGTERM). run() looks at the
        # flag between short waits.
        self._stop_requested = True

    def start(self) -> None:
        for index, spec in enumerate(self.specs):
            proc = subprocess.Popen(
                spec.argv,
                env={**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.children[spec.name] = proc
            pump = threading.Thread(target=self._pump, args=(index, spec.name, proc), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def run(self) -> int:
        """Start every child and block; return 0 after Ctrl-C, 1 when a child died."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        readiness = threading.Thread(target=self._watch_readiness, daemon=True)
        try:
            self.start()
            readiness.start()
            while True:
                self._wake.wait(SIGNAL_CHECK_INTERVAL)
                self._wake.clear()
                if self._stop_requested:
                    self._finished.set()
                    self.echo("stopping...")
                    self.stop()
                    return 0
                dead = [(n, p.returncode) for n, p in self.children.items() if p.poll() is not None]
                if dead:
                    self._finished.set()
                    for name, code in dead:
                        self.echo(click.style(f"{name} exited with code {code}", fg="red"))
                    self.stop()
                    return 1
        finally:
            self._finished.set()
            if readiness.is_alive():
                readiness.join(timeout=5)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """SIGTERM every live child (reverse start order), wait, SIGKILL stragglers.

        SIGTERM goes to the child alone, not its process group: a Celery worker's pool
        processes share its group, and SIGTERM on them kills the running jobs that the
        worker's warm shutdown is about to wait for. SIGKILL, at the end, takes the
        whole group, so nothing a child started outlives ``zephyr up``.
        """
        for proc in reversed(list(self.children.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for name, proc in self.children.items():
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.echo(click.style(f"{name} did not stop in {self.grace:g}s; killing", fg="red"))
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _signal_group(proc, signal.SIGKILL)  # what it left behind in its group
        for pump in self._pumps:  # let the last lines of output through
            pump.join(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
