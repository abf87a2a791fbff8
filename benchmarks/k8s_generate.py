"""`zephyr k8s generate` for the chart's default values (goal: < 2 s, <= 1.2x plain Helm).

Beside it, in the same run, a plain `helm_python` render of the same chart with the
same values (what `helm template` does), in two forms:

- cold: a fresh process each time, as a user runs it: `zephyr k8s generate` (Settings,
  the process list, the render, objects sorted and printed as YAML) against
  `python -c` loading the chart, rendering it and printing Helm's text;
- warm: in one process, our render (values from Settings, Helm, parse, order, YAML)
  against `Chart.load(...).render(...)` alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, median, row

RUNS = 7
ENV = {"ZEPHYR_APP": "shop.main:app", "CONTAINER_TAG": "1.0.0"}
PLAIN = """
import sys, helm_python
chart = helm_python.Chart.load(sys.argv[1])
command = ["zephyr", "serve", "--app", "shop.main:app", "--host", "0.0.0.0", "--port", "8000"]
values = {"app": "shop.main:app", "image": {"repository": "shop", "tag": "1.0.0"},
          "command": command}
out = chart.render(values, name="shop", namespace="default")
texts = [text for name, text in sorted(out.items()) if name.endswith(".yaml")]
sys.stdout.write("---\\n".join(texts))
"""


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    sys.path.insert(0, str(REPO))
    from zephyr_deploy._helm import chart_dir

    chart = str(chart_dir())
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ZEPHYR_", "K8S_", "CONTAINER_"))
    }
    env.update(ENV, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder) / "shop"
        cwd.mkdir()
        ours_cold, raw_cold = [], []
        for _ in range(RUNS):  # interleaved: the machine's load hits both alike
            ours_cold.append(
                timed([sys.executable, "-m", "zephyr_core", "k8s", "generate"], cwd, env)
            )
            raw_cold.append(timed([sys.executable, "-c", PLAIN, chart], cwd, env))
        os.chdir(cwd)
        os.environ.update(ENV)
        import helm_python

        from zephyr_deploy._helm import _load
        from zephyr_deploy._k8s.cli import rendering

        ours_warm, raw_warm = [], []
        for _ in range(RUNS * 3):
            _load.cache_clear()  # the chart is loaded again, as the plain render does
            started = time.perf_counter()
            result = rendering(None, None, None, ())
            "---\n".join(m.text for m in result.manifests)
            ours_warm.append(time.perf_counter() - started)
            started = time.perf_counter()
            with helm_python.Chart.load(chart) as loaded:
                loaded.render(result.values, name="shop", namespace="default")
            raw_warm.append(time.perf_counter() - started)
    print(
        row(
            "k8s generate, cold process (median)",
            median(ours_cold) * 1e3,
            median(raw_cold) * 1e3,
            "ms",
        )
    )
    print(
        row(
            "k8s generate, in process (median)",
            median(ours_warm) * 1e3,
            median(raw_warm) * 1e3,
            "ms",
        )
    )
    warm_ratio = median(ours_warm) / median(raw_warm)
    print(f"goal: < 2000 ms cold: {'met' if median(ours_cold) < 2 else 'MISSED'}; ", end="")
    print(f"<= 1.2x plain helm_python in process: {'met' if warm_ratio <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
