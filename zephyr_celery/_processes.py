"""Several Celery workers from one ``zephyr jobs worker``: one per core, each with the async pool.

One Celery worker process spends its main thread on the consumer (receiving,
request objects, events) and one core's worth of Python on its jobs: on more
cores, more whole workers (each its own consumer and event loop), as ``celery
multi`` would start, but supervised by one command an orchestrator can signal.

The parent forks the workers after the app is loaded, then only forwards
signals: SIGTERM (warm shutdown), SIGINT, SIGQUIT (cold), SIGHUP. Each worker runs
in its own process group (a terminal's Ctrl-C reaches the parent, which forwards it
once: a second SIGINT would turn a warm shutdown cold) and dies with the parent
(``PR_SET_PDEATHSIG`` on Linux) if the parent is killed. When one worker exits on
its own, the others are stopped (warm) and the parent exits with its code, so an
orchestrator restarts the whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger("zephyr_celery")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def core_count(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container's CPU limit, rounded up), where the OS tells them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


def worker_name(hostname: str | None, index: int) -> str:
    """The node name of worker ``index``: ``zephyr1@%h`` or ``NAME-1@HOST`` from ``-n``."""
    if not hostname:
        return f"zephyr{index}@%h"
    name, at, host = hostname.partition("@")
    return f"{name}-{index}@{host}" if at else f"{name}-{index}"


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def run_workers(count: int, run: Callable[[int], Any]) -> int:
    """Fork ``count`` workers, each calling ``run(index)`` (1-based); supervise them.

    Returns:
        The exit code: 0 when all exited cleanly, else the first non-zero one.
    """
    parent = os.getpid()
    children: dict[int, int] = {}
    for index in range(1, count + 1):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)
                _die_with_parent(parent)
                code = int(run(index) or 0)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index

    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code and not code:
            code = exit_code if exit_code > 0 else 1
        if not stopping and children:
            logger.error("worker %d exited (code %d): stopping the others", index, exit_code)
            forward(signal.SIGTERM, None)
    return code
