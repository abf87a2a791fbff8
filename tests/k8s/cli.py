"""Run the real ``zephyr`` command as a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_PREFIXES = (
    "JOB_",
    "CACHE_",
    "ZEPHYR_",
    "CONTAINER_",
    "DATABASE_",
    "K8S_",
    "AUTOSCALING_",
    "KUBECONFIG",
)


@dataclass
class Result:
    code: int
    out: str
    err: str


def zephyr(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_PREFIXES) and k != "FLOWER_BASIC_AUTH"
    }
    proc = subprocess.run(
        [sys.executable, "-m", "zephyr_core", *args],
        cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)
