"""The wheel ships every package with its data files, and each package's public API."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent.name for p in REPO.glob("zephyr_*/__init__.py"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300, env={"TMPDIR": str(build), "PATH": ""},
    )  # fmt: skip
    (path,) = out.glob("zephyr_infra-*.whl")
    return zipfile.ZipFile(path)


def package_files(package: str) -> list[str]:
    """Every file git tracks (or would) under a package folder, excluding caches."""
    return sorted(
        str(path.relative_to(REPO))
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_wheel_ships_every_file_of_the_package(wheel: zipfile.ZipFile, package: str) -> None:
    names = set(wheel.namelist())
    assert f"{package}/py.typed" in names
    missing = [name for name in package_files(package) if name not in names]
    assert missing == []


def test_wheel_declares_the_console_script_and_commands(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = (n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "zephyr = zephyr_core.cli:main" in text
    assert "[zephyr.commands]" in text
    assert "docker = zephyr_deploy.cli:docker" in text


def test_wheel_ships_the_deploy_templates(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for template in ("Dockerfile.j2", "dockerignore.j2", "docker-compose.yml.j2"):
        assert f"zephyr_deploy/templates/{template}" in names


@pytest.mark.parametrize("package", PACKAGES)
def test_all_lists_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", package).startswith(package)
        and not isinstance(value, type(sys))
    }
    assert public <= set(exported) | {"__version__"}
    for name in exported:
        assert hasattr(module, name), name


def test_readme_installs_from_a_checkout_until_published() -> None:
    """`pip install 'zephyr-infra[all]'` fails: the package is not on PyPI yet."""
    import configparser
    import re

    readme = (REPO / "README.md").read_text()
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^pip install .*$", install, flags=re.MULTILINE)
    assert any(command.startswith("pip install -e '.[all]'") for command in commands)
    for command in commands:
        assert "-e '.[" in command or "@ git+" in command, command
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    extras = setup["options.extras_require"]
    for extra in re.findall(r"\[(\w+)\]", " ".join(commands)):
        assert extra in extras, extra
