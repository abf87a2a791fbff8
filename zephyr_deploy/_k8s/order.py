"""The order objects are applied in: what others refer to comes first.

A ServiceAccount and ConfigMap before the pods that name them, Services before the
workloads (their DNS names exist when the pods start), workloads before what scales
or guards them. An unknown kind goes last.
"""

from __future__ import annotations

from zephyr_deploy._helm import Manifest

APPLY_ORDER = (
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "StatefulSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "TriggerAuthentication",
    "ScaledObject",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
    "ServiceMonitor",
)


def in_apply_order(manifests: list[Manifest]) -> list[Manifest]:
    """``manifests`` sorted by :data:`APPLY_ORDER`, then by name (stable)."""
    rank = {kind: index for index, kind in enumerate(APPLY_ORDER)}
    return sorted(manifests, key=lambda m: (rank.get(m.kind, len(rank)), m.name))
