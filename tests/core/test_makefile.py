"""`make check` lints the project's own files, not whatever else lies in the checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD = '"""A tiny package."""\n\n\ndef answer() -> int:\n    """The answer."""\n    return 42\n'
SCRATCH = "import os\nx=1\n"  # unused import, unformatted: fails ruff and ruff format


def checkout(tmp_path: Path, *, git: bool) -> Path:
    """A copy of the Makefile and lint config with a package, and .venv's tools."""
    if git and shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "zephyr_demo").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "setup.cfg"):
        shutil.copy(REPO / name, repo / name)
    (repo / "zephyr_demo" / "__init__.py").write_text(GOOD)
    (repo / ".venv").mkdir()
    (repo / ".venv" / "bin").symlink_to(REPO / ".venv" / "bin")
    (repo / ".venv" / ".installed").touch()  # newer than setup.cfg: no install
    if git:
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        tracked = ["Makefile", "pyproject.toml", "setup.cfg", "zephyr_demo/__init__.py"]
        subprocess.run(["git", "add", *tracked], cwd=repo, check=True)
    (repo / "scratch.py").write_text(SCRATCH)  # never added
    return repo


def make_check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "check"], cwd=repo, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("git", [True, False], ids=["git checkout", "no git"])
def test_make_check_ignores_an_untracked_scratch_file(tmp_path: Path, git: bool) -> None:
    repo = checkout(tmp_path, git=git)
    result = make_check(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scratch.py" not in result.stdout + result.stderr
    assert "mypy: zephyr_demo" in result.stdout

    # The project's own files are still linted.
    (repo / "zephyr_demo" / "__init__.py").write_text(GOOD + SCRATCH)
    failed = make_check(repo)
    assert failed.returncode != 0
    assert "zephyr_demo/__init__.py" in failed.stdout + failed.stderr
