"""The only renderer of Kubernetes objects: the shipped chart, through Helm's own engine.

``helm_python`` runs Helm v4's Go code (values coalescing, ``values.schema.json``,
templates, ``fail``), so what ``zephyr k8s generate`` writes is exactly what
``helm install`` would apply. Helm's errors are translated here, once: a value the
schema or a template refuses is a :class:`~zephyr_core.ConfigError` naming it.

The chart lives once in the repository, at ``helm/zephyr-app``; the wheel installs
it as data (``share/zephyr-infra/helm/zephyr-app``), found through the distribution's
file list so any install scheme (venv, ``--user``, ``--prefix``) works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from zephyr_core import ConfigError
from zephyr_deploy._exceptions import DeployError

CHART_NAME = "zephyr-app"
#: Where the wheel puts the chart, relative to the installation's data folder.
DATA_PATH = f"share/zephyr-infra/helm/{CHART_NAME}"
_CHECKOUT = Path(__file__).resolve().parents[1] / "helm" / CHART_NAME


@lru_cache(maxsize=1)
def chart_dir() -> Path:
    """The chart's folder: the checkout's copy, else the one the wheel installed.

    Raises:
        DeployError: neither is there (a broken install).
    """
    if (_CHECKOUT / "Chart.yaml").is_file():
        return _CHECKOUT
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("zephyr-infra")
    except PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist else []:
        if file.as_posix().endswith(f"{DATA_PATH}/Chart.yaml"):
            return Path(str(dist.locate_file(file))).resolve().parent  # type: ignore[union-attr]
    raise DeployError(
        f"the {CHART_NAME} chart is not installed (looked in {_CHECKOUT} and the "
        f"zephyr-infra distribution's {DATA_PATH}): reinstall zephyr-infra"
    )


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template it came from."""

    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        """The object's kind (``Deployment``, ...)."""
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        """The object's ``metadata.name``."""
        return str(self.body["metadata"]["name"])


@lru_cache(maxsize=4)
def _load(path: Path) -> Any:
    import helm_python

    try:
        return helm_python.Chart.load(path)
    except helm_python.HelmError as exc:
        raise DeployError(f"cannot load the chart at {path}: {exc}") from None


def render_text(
    values: dict[str, Any], *, release: str, namespace: str, chart: Path | None = None
) -> dict[str, str]:
    """Helm's output: template path -> rendered text (NOTES.txt and empty ones included).

    Raises:
        ConfigError: a value is refused by ``values.schema.json`` or by a template's
            check; the message names it.
        DeployError: the chart cannot be loaded or rendered for another reason.
    """
    import helm_python

    loaded = _load(chart or chart_dir())
    try:
        rendered: dict[str, str] = loaded.render(values, name=release, namespace=namespace)
    except (helm_python.HelmValuesError, helm_python.HelmRenderError) as exc:
        raise values_error(str(exc)) from None
    except helm_python.HelmError as exc:
        raise DeployError(f"rendering the {CHART_NAME} chart failed: {exc}") from None
    return rendered


def render(
    values: dict[str, Any], *, release: str, namespace: str, chart: Path | None = None
) -> list[Manifest]:
    """Every object the chart renders for ``values`` (``helm test`` hooks left out)."""
    manifests = []
    for source, text in sorted(render_text(values, release=release, namespace=namespace, chart=chart).items()):
        if not source.endswith((".yaml", ".yml")) or "/tests/" in source:
            continue
        for body in yaml.safe_load_all(text):
            if body:
                manifests.append(Manifest(source, body))
    return manifests


_FAIL = re.compile(r"execution error at \([^)]*\): (.*)$", re.DOTALL)
_SCHEMA_LINE = re.compile(r"^-?\s*at '([^']*)': (.*)$")


def values_error(message: str) -> ConfigError:
    """Helm's error for bad values, as one line that names the value."""
    if match := _FAIL.search(message):
        text = match.group(1).strip()
        return ConfigError(f"chart values: {text}", field=text.split(" ", 1)[0])
    problems = []
    for line in message.splitlines():
        if match := _SCHEMA_LINE.match(line.strip()):
            path = match.group(1).strip("/").replace("/", ".") or "(top level)"
            reason = match.group(2)
            if reason == "'not' failed":  # only image.tag and redis.image.tag say "not"
                reason = "'latest' is refused: name the release the pods run"
            problems.append(f"{path}: {reason}")
    if problems:
        return ConfigError(
            "chart values: " + "; ".join(problems),
            field=problems[0].split(":", 1)[0],
            problems=problems,
        )
    return ConfigError(f"chart values: {' '.join(message.split())}")
