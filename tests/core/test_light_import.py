"""``import zephyr_core`` and building Settings leave redis-py and prometheus_client unloaded.

Every CLI start pays for what ``import zephyr_core`` loads, and a Python without redis-py's
asyncio dependencies (``zephyr init`` run as another user, on the system Python) must still
import it. Settings parses Sentinel and Cluster URLs without either library. Each case runs
in a fresh interpreter: this test process has long since imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("redis", "prometheus_client")

SENTINEL_URL = "sentinel://:pw@127.0.0.1:26379;sentinel://127.0.0.1:26380/0?master_name=m"
CLUSTER_URL = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"

CASES = {
    "import zephyr_core": "import zephyr_core",
    "Settings()": "import zephyr_core; zephyr_core.Settings()",
    "Settings on Sentinel and Cluster": (
        "import zephyr_core\n"
        f"settings = zephyr_core.Settings(\n"
        f"    JOB_QUEUE_URL={SENTINEL_URL!r}, CACHE_URL={CLUSTER_URL!r}\n"
        ")\n"
        "assert settings.redis_topology(settings.JOB_QUEUE_URL).kind == 'sentinel'\n"
        "assert settings.redis_topology(settings.CACHE_URL).kind == 'cluster'"
    ),
    "the zephyr command's group": "import zephyr_core.cli",
}

# Prints which of HEAVY the code loaded (top-level names: a short failure message).
REPORT = (
    "\nimport json, sys\n"
    f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
)


@pytest.mark.parametrize("code", CASES.values(), ids=CASES.keys())
def test_loads_neither_redis_nor_prometheus_client(code: str, tmp_path: Path) -> None:
    # In an empty folder: no .env of the checkout's may point settings anywhere.
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{code!r} loaded {loaded}"


def test_the_redis_clients_module_is_where_redis_loads(tmp_path: Path) -> None:
    """The check above is not vacuous: the module that makes clients does load both."""
    code = "import zephyr_core._redis_clients" + REPORT
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert loaded == set(HEAVY)
