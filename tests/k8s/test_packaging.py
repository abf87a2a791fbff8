"""The wheel carries the chart: `zephyr k8s` works from a plain install, no checkout."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "zephyr-app"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300, env={"TMPDIR": str(build), "PATH": ""},
    )  # fmt: skip
    (path,) = out.glob("zephyr_infra-*.whl")
    return path


def chart_files() -> list[str]:
    return sorted(str(p.relative_to(CHART)) for p in CHART.rglob("*") if p.is_file())


def test_the_wheel_carries_every_chart_file_once(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split("/helm/zephyr-app/", 1)[1] for n in names if "/helm/zephyr-app/" in n]
    assert sorted(data) == chart_files()
    assert ".helmignore" in data and "values.schema.json" in data
    assert all(
        n.startswith("zephyr_infra-0.1.0.data/data/share/zephyr-infra/")
        for n in names
        if "/helm/" in n
    )


def test_k8s_generate_renders_the_installed_copy(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120
    )
    python = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
         "--ignore-installed",  # else pip uninstalls this environment's zephyr-infra first
         "--prefix", str(env_dir), str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    # The dependencies come from this environment's site-packages (a plain path entry:
    # its .pth files, among them the editable install of the checkout, are not run).
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    project = tmp_path / "shop"
    project.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ZEPHYR_APP": "shop.main:app",
        "CONTAINER_TAG": "3.0.0",
        "K8S_NAMESPACE": "from-wheel",
    }
    script = "import zephyr_deploy._helm as h; print(h.chart_dir()); print(h.__file__)"
    where = subprocess.run(
        [str(python), "-c", script],
        cwd=project, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    chart, module = where.stdout.split()
    assert chart == str(env_dir.resolve() / "share" / "zephyr-infra" / "helm" / "zephyr-app")
    assert module.startswith(str(env_dir))  # the installed package, not the checkout
    result = subprocess.run(
        [str(python), "-m", "zephyr_core", "k8s", "generate"],
        cwd=project, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "namespace: from-wheel" in result.stdout
    assert 'image: "shop:3.0.0"' in result.stdout
