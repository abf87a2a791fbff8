"""The stack of the repository's docker-compose.yml run as plain processes the way its
containers would run them, as far as this machine allows without a Docker engine.

Each service's command, and each health check compose would run, is started as user
10001:10001 (the image's USER) with HOME=/nonexistent, the Dockerfile's final-stage ENV,
and code and virtual environment owned by root (the user owns nothing and can write
nothing but /tmp). Not a container: no image is built, the virtual environment is the
development one (an editable install), the root filesystem is not mounted read-only, and
Redis is this machine's test server. What it shows: the commands start as that user,
reach health, and the health checks of the compose file (HTTP via the image's Python,
``zephyr docker probe worker|beat``) pass against them.

Python here lives under /root (mode 700), out of reach of user 10001: each child gets a
private mount namespace where a tmpfs hides /root and Python's own folder is bound back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.celery.jobs_processes import Proc, Procs
from tests.deploy.conftest import REPO
from tests.servers import free_port, need, wait_until

UID = "10001"
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _image_user_tools() -> None:
    # Real Redis and workers run here: under CI=true a missing tool fails, never skips.
    need(
        os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("setpriv")),
        "root, unshare and setpriv (to run children as uid 10001)",
    )


# $1: Python's prefix; $2: an empty folder to keep it in; $3: its private ancestor.
AS_IMAGE_USER = """
set -e
mount --make-rprivate /
mount --bind "$1" "$2"
mount -t tmpfs -o mode=755 tmpfs "$3"
mkdir -p "$1"
mount --bind "$2" "$1"
shift 3
exec setpriv --reuid=10001 --regid=10001 --clear-groups "$@"
"""


def private_ancestor(path: Path) -> Path | None:
    """The outermost folder on ``path`` that others cannot enter, if any."""
    for folder in reversed(path.parents):
        if folder != Path("/") and not os.stat(folder).st_mode & 0o001:
            return folder
    return None


@pytest.fixture(scope="module")
def as_image_user() -> Iterator[list[str]]:
    """The argv prefix that runs a command as 10001:10001 with Python reachable."""
    prefix = Path(sys.base_prefix).resolve()
    ancestor = private_ancestor(prefix)
    if ancestor is None:
        yield ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
        return
    stash = Path(tempfile.mkdtemp(prefix="zephyr-python-"))
    yield ["unshare", "-m", "sh", "-c", AS_IMAGE_USER, "sh", str(prefix), str(stash), str(ancestor)]
    stash.rmdir()


@pytest.fixture
def app_dir() -> Iterator[Path]:
    """/app of the image: the Dockerfile's COPY sources, root's, readable by all."""
    base = Path(tempfile.mkdtemp(prefix="zephyr-app-"))
    base.chmod(0o755)
    stage = final_stage()
    for item in stage:
        if item["instruction"] == "COPY" and not item["value"].startswith("--from"):
            source = item["value"].split()[0]
            shutil.copytree(REPO / source, base / source, ignore=shutil.ignore_patterns("__py*"))
    yield base
    shutil.rmtree(base)


def final_stage() -> list[dict[str, str]]:
    structure: list[dict[str, str]] = DockerfileParser(str(REPO / "Dockerfile")).structure
    last = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last:]


def image_env() -> dict[str, str]:
    import re

    env: dict[str, str] = {}
    for item in final_stage():
        if item["instruction"] == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', item["value"]):
                env[key] = value.strip('"')
    env["PATH"] = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    return env


def substitute(argv: list[str], ports: dict[int, int]) -> list[str]:
    """Image paths and ports made local: zephyr from our venv, free ports for 8000/5555."""
    out = []
    for arg in argv:
        for fixed, free in ports.items():
            arg = arg.replace(f":{fixed}/", f":{free}/")
            arg = str(free) if arg == str(fixed) else arg
        out.append(arg)
    if out[0] in ("zephyr", "python"):
        out[0] = str(VENV_BIN / out[0])
    return out


def test_compose_services_start_and_pass_their_health_checks_as_uid_10001(
    as_image_user: list[str], app_dir: Path, redis_server: Any, redis_url: str, tmp_path: Path
) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = {name: compose["services"][name] for name in ("web", "worker", "beat", "flower")}
    dockerfile_health = next(i for i in final_stage() if i["instruction"] == "HEALTHCHECK")
    web_check = services["web"]["healthcheck"]["test"]
    assert json.loads(dockerfile_health["value"].split("CMD", 1)[1]) == web_check[1:]
    ports = {8000: free_port(), 5555: free_port()}
    env = {
        **image_env(),
        **services["web"]["environment"],
        "HOME": "/nonexistent",
        "JOB_QUEUE_URL": redis_server.url(0),
        "CACHE_URL": redis_server.url(1),
        "FLOWER_BASIC_AUTH": "admin:from-dot-env",  # what .env would hold
    }
    before = sorted(str(p.relative_to(app_dir)) for p in app_dir.rglob("*"))

    def check(name: str) -> bool:
        argv = substitute(list(services[name]["healthcheck"]["test"][1:]), ports)
        proc = subprocess.run([*as_image_user, *argv], cwd=app_dir, env=env,
                              capture_output=True, timeout=60)  # fmt: skip
        return proc.returncode == 0

    with Procs(app_dir, env, tmp_path / "logs") as procs:
        started: dict[str, Proc] = {}
        for name, service in services.items():
            argv = substitute(list(service["command"]), ports)
            if name == "web":
                argv[argv.index("--host") + 1] = "127.0.0.1"
            started[name] = _start(procs, name, [*as_image_user, *argv])
        for name in services:
            wait_until(lambda name=name: check(name), 90, f"{name}'s compose health check")
        ready = httpx.get(f"http://127.0.0.1:{ports[8000]}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        for name, proc in started.items():
            assert proc.alive(), name
            assert uids(proc.pid) == {UID}, name  # real, effective, saved, filesystem
    for name, proc in started.items():
        assert "Permission denied" not in proc.text(), (name, proc.text()[-2000:])
    after = sorted(str(p.relative_to(app_dir)) for p in app_dir.rglob("*"))
    assert after == before  # nothing written next to the code


def uids(pid: int) -> set[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = (line for line in status.splitlines() if line.startswith("Uid:"))
    return set(line.split()[1:])


def _start(procs: Procs, name: str, argv: list[str]) -> Proc:
    proc = Proc(argv, cwd=procs.cwd, env=procs.env, log=procs.logs / f"{name}.log")
    procs.started.append(proc)
    return proc
