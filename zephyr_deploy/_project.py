"""What ``zephyr docker init`` learns about the project in a folder.

Dependencies come from the first of ``uv.lock``, ``poetry.lock``, ``requirements.txt``,
``pyproject.toml`` (a PEP 621 ``[project]`` table) and ``setup.cfg``; the name, version
and source URL from the project's metadata; the files the app needs from where its
module is found.
"""

from __future__ import annotations

import configparser
import importlib.util
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zephyr_core import ConfigError
from zephyr_deploy._exceptions import DeployError

DEPENDENCY_FILES = ("uv.lock", "poetry.lock", "requirements.txt", "pyproject.toml", "setup.cfg")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Project:
    """A project folder as the Dockerfile sees it."""

    root: Path
    #: Which of DEPENDENCY_FILES the image installs from.
    dependencies: str
    name: str
    version: str
    source_url: str
    #: Paths (relative to root, POSIX) of the app's top-level package or module.
    app_paths: tuple[str, ...]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DeployError(f"cannot read {path.name}: {exc}") from None


def _read_cfg(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise DeployError(f"cannot read {path.name}: {exc}") from None
    return parser


def dependency_source(root: Path) -> str:
    """The first dependency file of the project, in the order of DEPENDENCY_FILES.

    Raises:
        DeployError: none is there (a ``pyproject.toml`` without ``[project]`` and a
            ``setup.cfg`` without ``[options]`` or ``[metadata]`` do not count), or a
            lock file has no ``pyproject.toml`` beside it.
    """
    try:
        present = {name for name in DEPENDENCY_FILES if (root / name).is_file()}
    except OSError as exc:
        raise DeployError(f"cannot read {root}: {exc.strerror}") from None
    for name in DEPENDENCY_FILES:
        path = root / name
        if name not in present:
            continue
        if name in ("uv.lock", "poetry.lock") and not (root / "pyproject.toml").is_file():
            raise DeployError(f"{name} found without the pyproject.toml it locks, in {root}")
        if name == "pyproject.toml" and "project" not in _read_toml(path):
            continue
        if name == "setup.cfg" and not {"metadata", "options"} & set(_read_cfg(path)):
            continue
        return name
    raise DeployError(
        f"no dependency file in {root}: expected one of {', '.join(DEPENDENCY_FILES)} "
        "(pyproject.toml with a [project] table)"
    )


def _metadata(root: Path) -> tuple[str | None, str | None, str | None]:
    """Name, version and source URL from pyproject.toml or setup.cfg, where given."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        table = data.get("project") or data.get("tool", {}).get("poetry") or {}
        if table:
            urls = {k.lower(): v for k, v in (table.get("urls") or {}).items()}
            url = urls.get("source") or urls.get("repository") or table.get("repository")
            url = url or urls.get("homepage") or table.get("homepage")
            version = table.get("version")
            return table.get("name"), str(version) if version else None, url
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        meta = _read_cfg(setup_cfg)
        if meta.has_section("metadata"):
            section = meta["metadata"]
            urls = dict(
                line.split("=", 1)
                for line in section.get("project_urls", "").splitlines()
                if "=" in line
            )
            urls = {k.strip().lower(): v.strip() for k, v in urls.items()}
            url = urls.get("source") or urls.get("repository") or section.get("url")
            version = section.get("version")
            if version and version.startswith(("attr:", "file:")):
                version = None
            return section.get("name"), version, url
    return None, None, None


def app_paths(root: Path, app: str, dependencies: str) -> tuple[str, ...]:
    """The top-level package (folder) or module (file) of ``app`` under ``root``.

    An app installed from the project itself (pyproject.toml or setup.cfg install
    ``.``) needs no copy: found outside ``root``, it returns nothing.

    Raises:
        ConfigError: ``app`` is not ``module:attribute`` or its module is not found.
        DeployError: the module lives outside the project and nothing installs it.
    """
    module, _, attribute = app.partition(":")
    if not module or not attribute:
        raise ConfigError(f"--app {app!r}: expected 'module:attribute', like 'myapp.main:app'")
    top = module.split(".")[0]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for candidate in (root / top, root / f"{top}.py"):
        if candidate.is_dir() or candidate.is_file():
            return (candidate.relative_to(root).as_posix(),)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConfigError(f"--app {app!r}: no module named {top!r} in {root}")
    if dependencies in ("pyproject.toml", "setup.cfg"):
        return ()
    raise DeployError(
        f"--app {app!r}: {top!r} is not in {root} and {dependencies} does not install the "
        "project itself; run zephyr docker init from the project's folder"
    )


def inspect_project(root: Path, app: str, *, source_url: str | None = None) -> Project:
    """Everything the Dockerfile needs to know about the project in ``root``."""
    dependencies = dependency_source(root)
    name, version, url = _metadata(root)
    return Project(
        root=root,
        dependencies=dependencies,
        name=name or root.resolve().name,
        version=version or UNKNOWN,
        source_url=source_url or url or UNKNOWN,
        app_paths=app_paths(root, app, dependencies),
    )


def project_name(root: Path) -> str:
    """The project's name from its metadata, else its folder's name."""
    name, _, _ = _metadata(root)
    return name or root.resolve().name
