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
from zephyr_core.cli import require_modules
from zephyr_deploy._exceptions import DeployError

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
    require_modules("k8s", "helm_python", "yaml")
    import helm_python

    from zephyr_deploy._image import image_name
    from zephyr_deploy._project import project_name
    from zephyr_deploy._values import (
        chart_values,
        check_redis,
        keda_password_warning,
        merged,
        with_sentinel_password_key,
    )

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
    check_redis(settings, values)
    values = with_sentinel_password_key(settings, values)
    if warning := keda_password_warning(settings, values):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    release = release or project
    try:
        helm_python.validate_release_name(release)
    except helm_python.HelmError:
        raise click.BadParameter(
            f"{release!r}: expected lowercase letters, digits and '-', at most 53 "
            "characters (a DNS label)",
            param_hint="--release",
        ) from None
    check_namespace(settings.K8S_NAMESPACE)
    return Rendering(release, settings.K8S_NAMESPACE, values)


def check_namespace(namespace: str) -> None:
    """K8S_NAMESPACE must be a DNS label: a ConfigError naming it otherwise."""
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise ConfigError(
            f"K8S_NAMESPACE={namespace!r}: expected a Kubernetes namespace: lowercase "
            "letters, digits and '-', at most 63 characters, starting and ending alphanumeric",
            field="K8S_NAMESPACE",
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


def _cluster_options(function: Any) -> Any:
    options = [
        click.option("--context", help="kubeconfig context (default: the current one)."),
        click.option("--release", help="Release name (default: the project's name)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _connect(context: str | None) -> Any:
    require_modules("k8s", "kubernetes", "yaml")
    from zephyr_deploy._k8s.cluster import Cluster

    return Cluster.connect(context)


def _release(release: str | None) -> str:
    from zephyr_deploy._image import image_name
    from zephyr_deploy._project import project_name

    return release or image_name(project_name(Path.cwd()))


@k8s.command()
@_render_options
@click.option("--context", help="kubeconfig context (default: the current one).")
@click.option(
    "--dry-run",
    type=click.Choice(["none", "server"]),
    default="none",
    show_default=True,
    help="server: the API server validates and admits every object, and stores none.",
)
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True)
@click.option("--no-wait", is_flag=True, help="Return once applied; do not wait for rollout.")
def apply(
    app_path: str | None,
    jobs_module: str | None,
    release: str | None,
    sets: tuple[str, ...],
    context: str | None,
    dry_run: str,
    timeout: float,
    no_wait: bool,
) -> None:
    """Render from Settings, server-side apply (field manager zephyr), wait for rollout."""
    from rich.console import Console

    from zephyr_deploy._k8s.apply import apply_all, wait_for_rollouts

    result = rendering(app_path, jobs_module, release, sets)  # bad values fail here
    cluster = _connect(context)
    console = Console(highlight=False, stderr=True)
    dry = dry_run == "server"
    console.print(
        f"applying {len(result.manifests)} objects of release {result.release!r} to "
        f"namespace {result.namespace!r} ({cluster.context}: {cluster.server})"
        + (" [dry run: nothing is stored]" if dry else "")
    )
    apply_all(
        cluster,
        result.manifests,
        result.namespace,
        dry_run=dry,
        progress=lambda m: console.print(f"  {m.kind}/{m.name} applied", markup=False),
    )
    if dry or no_wait:
        click.secho("applied" + (" (server dry run)" if dry else ""), fg="green")
        return
    workloads = [m for m in result.manifests if m.kind in ("Deployment", "StatefulSet")]
    with console.status("waiting for rollout") as status:

        def show(rollouts: list[Any]) -> None:
            status.update(
                "waiting for rollout: "
                + ", ".join(f"{r.name} {r.ready}/{r.desired}" for r in rollouts)
            )

        wait_for_rollouts(cluster, workloads, result.namespace, timeout=timeout, show=show)
    click.secho(f"release {result.release!r} is rolled out", fg="green")


@k8s.command()
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def status(context: str | None, release: str | None, as_json: bool) -> None:
    """Each component: ready/desired, image, rollout, autoscaler, last warnings."""
    import json

    from zephyr_deploy._k8s.status import release_status

    settings = get_settings()
    check_namespace(settings.K8S_NAMESPACE)
    name = _release(release)
    expected = None
    if settings.ZEPHYR_APP:  # with the project's settings, what should be there
        try:
            result = rendering(None, None, name, (), settings)
            expected = {
                m.body["metadata"]["labels"]["app.kubernetes.io/component"]: m.name
                for m in result.manifests
                if m.kind == "Deployment"
            }
        except (ConfigError, click.UsageError):
            expected = None
    cluster = _connect(context)
    statuses, missing = release_status(cluster, settings.K8S_NAMESPACE, name, expected)
    if as_json:
        body = {
            "release": name,
            "namespace": settings.K8S_NAMESPACE,
            "components": [s.as_dict() for s in statuses],
            "missing": missing,
        }
        click.echo(json.dumps(body, indent=2))
    else:
        _print_status(name, settings.K8S_NAMESPACE, statuses, missing)
    if missing or not statuses:
        sys.exit(1)


def _print_status(release: str, namespace: str, statuses: list[Any], missing: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"release {release} in {namespace}")
    for column in ("component", "ready", "image", "rollout", "autoscaler"):
        table.add_column(column)
    for item in statuses:
        table.add_row(item.component, item.ready, item.image, item.rollout, item.autoscaler or "-")
    console = Console(highlight=False)
    console.print(table)
    for item in statuses:
        for warning in item.warnings:
            console.print(f"warning ({item.component}): {warning}", markup=False)
    if not statuses:
        console.print(f"no Deployment of release {release!r} in namespace {namespace!r}")
    for line in missing:
        console.print(f"missing: {line} (run `zephyr k8s apply`)", markup=False)


def _deployment(cluster: Any, namespace: str, release: str, component: str) -> str:
    from zephyr_deploy._k8s.cluster import resource_path

    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
    items = cluster.request(
        "GET", resource_path("Deployment", namespace), query=[("labelSelector", selector)]
    )["items"]
    if not items:
        raise DeployError(
            f"no {component} Deployment of release {release!r} in namespace {namespace!r}"
        )
    return str(items[0]["metadata"]["name"])


@k8s.command()
@_cluster_options
@click.option("--component", type=click.Choice(COMPONENTS), default="web", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option("--since", metavar="DURATION", help="Only lines newer than 30s, 10m, 2h.")
@click.option("--tail", type=click.IntRange(0), help="Only the last N lines of each pod.")
def logs(
    context: str | None,
    release: str | None,
    component: str,
    follow: bool,
    since: str | None,
    tail: int | None,
) -> None:
    """The logs of a component's pods, each line prefixed with its pod."""
    from zephyr_deploy._k8s.logs import pods_of, print_logs, since_seconds

    seconds = since_seconds(since) if since else None
    settings = get_settings()
    check_namespace(settings.K8S_NAMESPACE)
    name = _release(release)
    cluster = _connect(context)
    pods = pods_of(cluster, settings.K8S_NAMESPACE, name, component)
    if not pods:
        raise DeployError(
            f"no {component} pod of release {name!r} in namespace {settings.K8S_NAMESPACE!r}"
        )
    print_logs(
        cluster, settings.K8S_NAMESPACE, pods, container=component, follow=follow,
        since=seconds, tail=tail, echo=click.echo,
    )  # fmt: skip


@k8s.command()
@_cluster_options
@click.option("--replicas", type=click.IntRange(0, 1000), required=True)
@click.option("--component", type=click.Choice(COMPONENTS), default="web", show_default=True)
def scale(context: str | None, release: str | None, replicas: int, component: str) -> None:
    """Set a component's replicas (refused while an autoscaler owns it)."""
    from zephyr_deploy._k8s.scale import scale as set_replicas

    settings = get_settings()
    check_namespace(settings.K8S_NAMESPACE)
    name = _release(release)
    cluster = _connect(context)
    deployment = _deployment(cluster, settings.K8S_NAMESPACE, name, component)
    set_replicas(cluster, settings.K8S_NAMESPACE, deployment, replicas)
    click.secho(f"Deployment {deployment}: {replicas} replicas requested", fg="green")
