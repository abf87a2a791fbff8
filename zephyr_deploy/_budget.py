"""The proposal's "auto-scaling response < 2 min", as a budget computed from rendered objects.

From the moment load rises to the moment a new pod is ready, worst case, adding:

1. the metric's delay: metrics-server's resolution (15 s) for CPU/memory, or KEDA's
   ``pollingInterval`` for queue length;
2. the HPA controller's sync period (15 s, kube-controller-manager's default);
3. the scale-up stabilization window (``behavior.scaleUp``; 0 s by default);
4. the new pod's start: its startupProbe's ``periodSeconds x failureThreshold``
   (the longest it may take before it counts as started);
5. one readiness period after that.

Image pull and scheduling are left out (they depend on the registry and the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zephyr_deploy._helm import Manifest

#: kube-controller-manager's --horizontal-pod-autoscaler-sync-period default.
HPA_SYNC_SECONDS = 15
#: metrics-server's --metric-resolution default.
METRICS_RESOLUTION_SECONDS = 15
#: The proposal's target.
GOAL_SECONDS = 120


@dataclass(frozen=True)
class Budget:
    """The worst-case seconds from rising load to a new ready pod, step by step."""

    component: str
    steps: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        """The sum of the steps, in seconds."""
        return sum(seconds for _, seconds in self.steps)

    @property
    def within_goal(self) -> bool:
        """Whether the total is under :data:`GOAL_SECONDS`."""
        return self.total < GOAL_SECONDS


def _pod_start(deployment: dict[str, Any]) -> list[tuple[str, int]]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    startup = container.get("startupProbe", {})
    readiness = container.get("readinessProbe", {})
    return [
        (
            "startup probe, worst case",
            startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
            + startup.get("initialDelaySeconds", 0),
        ),
        ("first readiness period", readiness.get("periodSeconds", 10)),
    ]


def _stabilization(behavior: dict[str, Any] | None) -> int:
    return int(((behavior or {}).get("scaleUp") or {}).get("stabilizationWindowSeconds", 0))


def scale_up_budgets(manifests: list[Manifest]) -> list[Budget]:
    """One budget per autoscaled component of a rendering (HPA or KEDA ScaledObject)."""
    deployments = {m.name: m.body for m in manifests if m.kind == "Deployment"}
    budgets = []
    for manifest in manifests:
        if manifest.kind not in ("HorizontalPodAutoscaler", "ScaledObject"):
            continue
        spec = manifest.body["spec"]
        if manifest.kind == "HorizontalPodAutoscaler":
            target = deployments[spec["scaleTargetRef"]["name"]]
            steps = [
                ("metrics-server resolution", METRICS_RESOLUTION_SECONDS),
                ("HPA sync period", HPA_SYNC_SECONDS),
                ("scale-up stabilization window", _stabilization(spec.get("behavior"))),
            ]
        else:
            target = deployments[spec["scaleTargetRef"]["name"]]
            behavior = (
                spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
            )
            steps = [
                ("KEDA polling interval", int(spec.get("pollingInterval", 30))),
                ("HPA sync period", HPA_SYNC_SECONDS),
                ("scale-up stabilization window", _stabilization(behavior)),
            ]
        component = target["metadata"]["labels"]["app.kubernetes.io/component"]
        budgets.append(Budget(component, tuple(steps + _pod_start(target))))
    return budgets
