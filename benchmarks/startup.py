"""Cold start of `zephyr serve` until /health/ready answers 200 (goal: median < 2 s).

Beside it, in the same run, plain `uvicorn` serving the same app until `/` answers:
the ratio is what our wrapper (settings, health checks, metrics) adds to a cold start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import REPO, median, row

from tests.servers import RedisServer, free_port

APP = "examples.shop.app:app"


def cold_start(argv: list[str], url: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
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
        finally:
            redis.stop()
    print(
        f"cold start, median of {args.runs} (goal: zephyr serve < 2 s until /health/ready is 200)"
    )
    print(row("zephyr serve -> /health/ready 200", median(ours), median(raw), "s"))
    print(f"  zephyr serve runs: {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"  plain uvicorn runs: {', '.join(f'{t:.2f}' for t in raw)} s")


if __name__ == "__main__":
    main()
