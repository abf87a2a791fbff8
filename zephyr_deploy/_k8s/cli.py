"""``zephyr k8s generate|apply|status|logs|scale``: the shipped chart, from Settings.

Every command renders the chart with Helm's engine first (``_helm``), so a bad value
fails before anything is sent to a cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from zephyr_core import ConfigError, Settings, get_settings

COMPONENTS = ("web", "worker", "beat", "flower")


@click.group()
def k8s() -> None:
    """Kubernetes: render the zephyr-app chart from Settings, apply, status, logs, scale."""


def _render_options(function: Any) -> Any:
    options = [
        click.option(
            "--app", "app_path", help="ASGI app as module:attribute (default: ZEPHYR_APP)."
        ),
        click.option("-A", "--jobs", "jobs_module", help="Jobs module (default: ZEPHYR_JOBS)."),
        click.option("--release", help="Release name (default: the project's name)."),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="KEY=VALUE",
            help="A chart value, as helm --set (repeat; applied over Settings).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class Rendering:
    """The chart rendered for this project: release, namespace and objects in apply order."""

    def __init__(self, release: str, namespace: str, values: dict[str, Any]) -> None:
        from zephyr_deploy._helm import render
        from zephyr_deploy._k8s.order import in_apply_order
        from zephyr_deploy._values import name_settings

        self.release, self.namespace, self.values = release, namespace, values
        try:
            self.manifests = in_apply_order(render(values, release=release, namespace=namespace))
        except ConfigError as exc:
            raise name_settings(exc) from None


def rendering(
    app_path: str | None,
    jobs_module: str | None,
    release: str | None,
    sets: tuple[str, ...],
    settings: Settings | None = None,
) -> Rendering:
    """Settings + ``--set`` -> the rendered chart (bad input: ConfigError, exit 2)."""
    _need("helm_python", "yaml")
    import helm_python

    from zephyr_deploy._image import image_name
    from zephyr_deploy._project import project_name
    from zephyr_deploy._values import chart_values, merged

    settings = settings or get_settings()
    app_path = app_path or settings.ZEPHYR_APP
    if not app_path:
        raise click.UsageError("no app: pass --app module:attribute or set ZEPHYR_APP")
    jobs_module = jobs_module or os.environ.get("ZEPHYR_JOBS") or None
    project = image_name(project_name(Path.cwd()))
    values = chart_values(settings, app=app_path, jobs_module=jobs_module, project=project)
    for expression in sets:
        if "=" not in expression:
            raise click.BadParameter(f"{expression!r}: expected KEY=VALUE", param_hint="--set")
        try:
            values = merged(values, helm_python.parse_set_string(expression))
        except helm_python.HelmError as exc:
            raise click.BadParameter(f"{expression!r}: {exc}", param_hint="--set") from None
    return Rendering(release or project, settings.K8S_NAMESPACE, values)


def _need(*modules: str) -> None:
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise click.UsageError(
                f"'zephyr k8s' needs the 'k8s' extra ({module} is not installed): "
                "pip install 'zephyr-infra[k8s]'"
            )


@k8s.command()
@_render_options
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object into this folder (default: print one stream).",
)
def generate(
    app_path: str | None,
    jobs_module: str | None,
    release: str | None,
    sets: tuple[str, ...],
    output: Path | None,
) -> None:
    """Render the zephyr-app chart from Settings into plain manifests (for GitOps tools)."""
    result = rendering(app_path, jobs_module, release, sets)
    texts = [m.text for m in result.manifests]
    if output is None:
        sys.stdout.write("---\n" + "---\n".join(texts))
        return
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob("[0-9][0-9]-*.yaml"):  # a previous run's objects
        stale.unlink()
    for index, (manifest, text) in enumerate(zip(result.manifests, texts, strict=True)):
        name = f"{index:02d}-{manifest.kind.lower()}-{manifest.name}.yaml"
        (output / name).write_text(text)
    click.secho(
        f"wrote {len(texts)} objects for release {result.release!r} "
        f"(namespace {result.namespace!r}) to {output}",
        fg="green",
        err=True,
    )
