"""``zephyr k8s scale``: the Deployment's scale subresource, unless an autoscaler owns it."""

from __future__ import annotations

from typing import Any

from zephyr_deploy._exceptions import DeployError
from zephyr_deploy._k8s.cluster import ApiError, Cluster, resource_path

MERGE_PATCH = "application/merge-patch+json"


def owning_autoscaler(cluster: Cluster, namespace: str, deployment: str) -> str | None:
    """The HPA or KEDA ScaledObject that scales ``deployment``, described, or None."""
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        try:
            items = cluster.request("GET", resource_path(kind, namespace))["items"]
        except ApiError as exc:
            if exc.status == 404:  # KEDA's CRD is not installed
                continue
            raise
        for item in items:
            spec = item["spec"]
            if spec["scaleTargetRef"]["name"] == deployment:
                low = spec.get("minReplicas", spec.get("minReplicaCount", 1))
                high = spec.get("maxReplicas", spec.get("maxReplicaCount", "?"))
                return f"{kind} {item['metadata']['name']} ({low}..{high} replicas)"
    return None


def scale(cluster: Cluster, namespace: str, deployment: str, replicas: int) -> dict[str, Any]:
    """Set ``deployment``'s replicas through its scale subresource.

    Raises:
        DeployError: an autoscaler owns the Deployment (it would undo the change at
            its next sync), or the Deployment does not exist.
    """
    owner = owning_autoscaler(cluster, namespace, deployment)
    if owner:
        raise DeployError(
            f"Deployment {deployment} is scaled by {owner}: it would undo this; change "
            "its minReplicas/maxReplicas (AUTOSCALING_* or the chart's autoscaling values) "
            "and apply instead"
        )
    try:
        answer: dict[str, Any] = cluster.request(
            "PATCH", f"{resource_path('Deployment', namespace, deployment)}/scale",
            body={"spec": {"replicas": replicas}}, content_type=MERGE_PATCH,
        )  # fmt: skip
    except ApiError as exc:
        if exc.status == 404:
            raise DeployError(
                f"no Deployment {deployment} in namespace {namespace}: run `zephyr k8s apply` first"
            ) from None
        raise
    return answer
