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


class Manifest:
    """One rendered Kubernetes object: Helm's text, parsed when first asked for.

    ``generate`` needs only each object's kind and name (read from the text's
    top-level lines) and writes Helm's text as it is, comments included; parsing
    every object into Python took twice as long as Helm's render itself.
    """

    __slots__ = ("_body", "_kind", "_name", "source", "text")

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self._body: dict[str, Any] | None = None
        kind, name = _KIND.search(text), _NAME.search(text)
        self._kind = kind.group(1).strip("\"'") if kind else None
        self._name = name.group(1).strip("\"'") if name else None

    @property
    def body(self) -> dict[str, Any]:
        """The object as plain data."""
        if self._body is None:
            # libyaml's parser: the pure-Python one is several times slower.
            self._body = yaml.load(self.text, Loader=_Loader) or {}
        return self._body

    @property
    def kind(self) -> str:
        """The object's kind (``Deployment``, ...)."""
        return self._kind or str(self.body["kind"])

    @property
    def name(self) -> str:
        """The object's ``metadata.name``."""
        return self._name or str(self.body["metadata"]["name"])

    def __repr__(self) -> str:
        return f"Manifest({self.kind}/{self.name} from {self.source})"


_KIND = re.compile(r"^kind:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
# metadata's own name: the first two-space-indented name after a top-level metadata key.
_NAME = re.compile(r"^metadata:[ \t]*\n(?:  .*\n)*?  name:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
_DOCUMENT = re.compile(r"^---[ \t]*$", re.MULTILINE)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    rendered = render_text(values, release=release, namespace=namespace, chart=chart)
    for source, text in sorted(rendered.items()):
        if not source.endswith((".yaml", ".yml")) or "/tests/" in source:
            continue
        for chunk in _DOCUMENT.split(text):
            chunk = chunk.strip("\n")
            if any(line and not line.lstrip().startswith("#") for line in chunk.splitlines()):
                manifests.append(Manifest(source, chunk + "\n"))
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
