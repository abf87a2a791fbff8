"""``zephyr k8s status``: each component's Deployment, its autoscaler and its warnings.

Read from the cluster by the release's labels (``app.kubernetes.io/instance``), so
it works without the project's settings; with them, components the chart would
render but the cluster lacks are listed as missing (an interrupted apply).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from zephyr_deploy._k8s.apply import rollout_of
from zephyr_deploy._k8s.cluster import ApiError, Cluster, resource_path

#: Warning events shown per component.
LAST_EVENTS = 3


@dataclass
class ComponentStatus:
    """What ``status`` shows for one component."""

    component: str
    deployment: str
    ready: str
    image: str
    rollout: str
    autoscaler: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for ``--json``."""
        return asdict(self)


def selector(release: str) -> list[tuple[str, str]]:
    """The label selector of every object of ``release``."""
    return [("labelSelector", f"app.kubernetes.io/instance={release}")]


def _rollout_state(body: dict[str, Any]) -> str:
    rollout = rollout_of(body)
    if rollout.done:
        return "complete"
    for condition in (body.get("status") or {}).get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return f"stalled: {condition.get('reason', '')}: {condition.get('message', '')}"
    return f"in progress ({rollout.updated}/{rollout.desired} updated)"


def _autoscalers(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Deployment name -> its HPA's replicas and metrics (KEDA's HPAs included).

    Every HPA of the namespace: KEDA names and labels its HPAs itself (``keda-hpa-*``).
    """
    try:
        hpas = cluster.request("GET", resource_path("HorizontalPodAutoscaler", namespace))
    except ApiError:
        return {}
    found: dict[str, str] = {}
    for hpa in hpas["items"]:
        spec, status = hpa["spec"], hpa.get("status") or {}
        currents = dict(_metric_value(m) for m in status.get("currentMetrics") or [])
        targets = [_metric_value(m, target=True) for m in spec.get("metrics") or []]
        metrics = [f"{name} {currents.get(name, '?')}/{value}" for name, value in targets]
        found[spec["scaleTargetRef"]["name"]] = (
            f"{hpa['metadata']['name']}: {status.get('currentReplicas', '?')} -> "
            f"{status.get('desiredReplicas', '?')} replicas ({spec.get('minReplicas', 1)}.."
            f"{spec['maxReplicas']}); " + (", ".join(metrics) or "no metrics")
        )
    return found


def _metric_value(metric: dict[str, Any], *, target: bool = False) -> tuple[str, str]:
    """(name, value) of an HPA metric spec (its target) or status (its current value)."""
    source = metric.get("resource") or metric.get("external") or {}
    name = source.get("name") or source.get("metric", {}).get("name", "?")
    value = source.get("target" if target else "current") or {}
    if "averageUtilization" in value:
        return name, f"{value['averageUtilization']}%"
    return name, str(value.get("averageValue", value.get("value", "?")))


def _warnings(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    events = cluster.request(
        "GET", resource_path("Event", namespace), query=[("fieldSelector", "type=Warning")]
    )["items"]
    return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def release_status(
    cluster: Cluster, namespace: str, release: str, expected: dict[str, str] | None = None
) -> tuple[list[ComponentStatus], list[str]]:
    """Each component's status, and the expected components the cluster lacks.

    Args:
        expected: component -> Deployment name the chart renders (None: unknown).
    """
    deployments = cluster.request(
        "GET", resource_path("Deployment", namespace), query=selector(release)
    )["items"]
    scalers = _autoscalers(cluster, namespace)
    events = _warnings(cluster, namespace)
    statuses = []
    for body in deployments:
        name = body["metadata"]["name"]
        labels = body["metadata"].get("labels", {})
        containers = body["spec"]["template"]["spec"]["containers"]
        rollout = rollout_of(body)
        ours = [
            f"{e.get('reason', '')}: {' '.join(str(e.get('message', '')).split())}"
            for e in events
            if str(e.get("involvedObject", {}).get("name", "")).startswith(name)
        ]
        statuses.append(
            ComponentStatus(
                component=labels.get("app.kubernetes.io/component", name),
                deployment=name,
                ready=f"{rollout.ready}/{rollout.desired}",
                image=containers[0]["image"],
                rollout=_rollout_state(body),
                autoscaler=scalers.get(name),
                warnings=ours[-LAST_EVENTS:],
            )
        )
    present = {s.deployment for s in statuses}
    missing = sorted(
        f"{component} (Deployment/{name})"
        for component, name in (expected or {}).items()
        if name not in present
    )
    return statuses, missing
