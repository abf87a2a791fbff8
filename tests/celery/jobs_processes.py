"""Real ``zephyr`` processes for the jobs CLI tests: started in their own session, logged
to a file, and always stopped (their whole process group) when the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import redis

import zephyr_celery

REPO = Path(zephyr_celery.__file__).resolve().parent.parent
_PREFIXES = ("JOB_", "CACHE_", "ZEPHYR_", "FLOWER_", "CELERY_")


def child_env(*paths: Path, **values: str) -> dict[str, str]:
    """This environment without zephyr/Celery settings, plus ``values``, able to import
    the repository and ``paths``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)}
    python_path = [str(REPO), *(str(p) for p in paths)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def with_password(url: str, user: str = "zuser", password: str = "s3cret") -> str:
    """Add a Redis ACL user with ``password`` to the server at ``url``; its URL."""
    client = redis.Redis.from_url(url)
    client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
        commands=["+@all"],
    )  # fmt: skip
    client.close()
    return url.replace("redis://", f"redis://{user}:{password}@", 1)


class Proc:
    """One child process whose output goes to ``log``."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group, wait, SIGKILL what is left."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(10)
        self.signal_group(signal.SIGKILL)  # grandchildren left in the group
        self._out.close()


class Procs:
    """Starts ``python -m zephyr_core ...`` children and stops them all on exit."""

    def __init__(self, cwd: Path, env: dict[str, str], logs: Path) -> None:
        self.cwd, self.env, self.logs = cwd, env, logs
        self.started: list[Proc] = []
        logs.mkdir(parents=True, exist_ok=True)

    def zephyr(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(
            [sys.executable, "-m", "zephyr_core", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            log=self.logs / f"{name}.log",
        )
        self.started.append(proc)
        return proc

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in reversed(self.started):
            proc.stop()
        if exc is not None:  # show what the children said next to the failure
            for proc in self.started:
                print(f"==== {proc.log.name}\n{proc.text()[-4000:]}")
