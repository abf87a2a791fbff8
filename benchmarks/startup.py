"""Cold start of `zephyr serve` until /health/ready answers 200 (goal: median < 2 s).

Beside it, in the same run, plain `uvicorn` serving the same app until `/` answers:
the ratio is what our wrapper (settings, health checks, metrics) adds to a cold start.

Then the image's command: the repository's Dockerfile (what `zephyr docker init` wrote)
is read back, and its final stage is reproduced without Docker: a fresh virtual
environment with the project installed as the builder stage installs it (a regular,
not editable, install with the same extras), the app's files copied into an empty
working directory, the final stage's ENV, and the CMD run as a plain process (on a
free port on 127.0.0.1 instead of 0.0.0.0:8000). Plain uvicorn from the same
environment and folder is the baseline. `--skip-image` leaves this part out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import REPO, median, row

from tests.servers import RedisServer, free_port

APP = "examples.shop.app:app"


def cold_start(argv: list[str], url: str, env: dict[str, str], cwd: Path = REPO) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(10)


def final_stage(dockerfile: Path) -> list[dict[str, str]]:
    from dockerfile_parse import DockerfileParser

    structure: list[dict[str, str]] = DockerfileParser(str(dockerfile)).structure
    last = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last:]


def image_like(tmp: Path) -> tuple[Path, Path, list[str], dict[str, str]]:
    """A fresh venv and app folder laid out as the Dockerfile's final stage; its CMD and ENV."""
    dockerfile = REPO / "Dockerfile"
    text = dockerfile.read_text()
    install = re.search(r'pip install --no-cache-dir "\./(\[[^\]]*\])?"', text)
    if install is None:
        raise SystemExit("the Dockerfile installs the project some other way: update this script")
    stage = final_stage(dockerfile)
    (cmd,) = (json.loads(i["value"]) for i in stage if i["instruction"] == "CMD")
    env: dict[str, str] = {}
    for item in stage:
        if item["instruction"] == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', item["value"]):
                env[key] = value.strip('"')
    venv, app = tmp / "venv", tmp / "app"
    print(f"building a fresh virtual environment in {venv} (pip install ./{install[1] or ''})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         f"{REPO}{install[1] or ''}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app.mkdir()
    for item in stage:
        if item["instruction"] == "COPY" and not item["value"].startswith("--from"):
            source = item["value"].split()[0]
            shutil.copytree(REPO / source, app / source, ignore=shutil.ignore_patterns("__py*"))
    env["PATH"] = env.get("PATH", "$PATH").replace("/opt/venv", str(venv))
    env["PATH"] = env["PATH"].replace("$PATH", os.environ["PATH"])
    env["VIRTUAL_ENV"] = str(venv)
    return venv, app, cmd, env


def with_port(cmd: list[str], port: int) -> list[str]:
    argv = list(cmd)
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    return argv


def image_cold_starts(
    runs: int, base_env: dict[str, str], tmp: Path
) -> tuple[list[float], list[float], list[str]]:
    venv, app, cmd, image_env = image_like(tmp)
    env = {**base_env, **image_env}
    app_path = cmd[cmd.index("--app") + 1]
    ours, raw = [], []
    for _ in range(runs):
        port = free_port()
        argv = with_port(cmd, port)
        argv[0] = str(venv / "bin" / argv[0])
        ours.append(cold_start(argv, f"http://127.0.0.1:{port}/health/ready", env, cwd=app))
        port = free_port()
        uvicorn = [str(venv / "bin" / "uvicorn"), app_path, "--port", str(port)]
        raw.append(cold_start(uvicorn, f"http://127.0.0.1:{port}/", env, cwd=app))
    return ours, raw, cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-image", action="store_true", help="Only the development run.")
    args = parser.parse_args()
    image: tuple[list[float], list[float], list[str]] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        try:
            env = {**os.environ, "JOB_QUEUE_URL": redis.url(0), "CACHE_URL": redis.url(1)}
            ours, raw = [], []
            for _ in range(args.runs):
                port = free_port()
                ours.append(cold_start(
                    [sys.executable, "-m", "zephyr_core", "serve", "--app", APP,
                     "--port", str(port)],
                    f"http://127.0.0.1:{port}/health/ready", env,
                ))  # fmt: skip
                port = free_port()
                raw.append(cold_start(
                    [sys.executable, "-m", "uvicorn", APP, "--port", str(port)],
                    f"http://127.0.0.1:{port}/", env,
                ))  # fmt: skip
            if not args.skip_image:
                image = image_cold_starts(args.runs, env, Path(tmp))
        finally:
            redis.stop()
    print(
        f"cold start, median of {args.runs} (goal: zephyr serve < 2 s until /health/ready is 200)"
    )
    print(row("zephyr serve -> /health/ready 200", median(ours), median(raw), "s"))
    print(f"  zephyr serve runs: {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"  plain uvicorn runs: {', '.join(f'{t:.2f}' for t in raw)} s")
    if image is not None:
        ours, raw, cmd = image
        print(f"the Dockerfile's CMD from a fresh virtual environment: {' '.join(cmd)}")
        print(row("image CMD -> /health/ready 200", median(ours), median(raw), "s"))
        print(f"  image CMD runs: {', '.join(f'{t:.2f}' for t in ours)} s")
        print(f"  plain uvicorn (same venv) runs: {', '.join(f'{t:.2f}' for t in raw)} s")


if __name__ == "__main__":
    main()
