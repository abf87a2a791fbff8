"""``AutoScaler``: HPA values with behavior, and resource recommendations from observation.

Two jobs, both thin:

- :meth:`AutoScaler.chart_values` writes the chart's ``autoscaling`` values: an
  autoscaling/v2 HorizontalPodAutoscaler does the scaling; the cooldowns become its
  ``behavior`` (stabilization windows and rate policies).
- :meth:`AutoScaler.analyze_metrics` compares what this pod uses (cgroup v2 files,
  psutil when there are none) with its requests and limits, and recommends new ones
  (what a Vertical Pod Autoscaler would, for one pod, with the reasoning spelled out).
  ``zephyr serve`` answers ``GET /scaling/recommendations`` with it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zephyr_core import ConfigError, Settings, get_settings
from zephyr_core._quantities import cpu_cores, memory_bytes

#: Where cgroup v2 exposes this container's own usage and limits.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Seconds between the two CPU samples of one analysis.
CPU_SAMPLE_SECONDS = 0.5
_MI = 1024 * 1024


@dataclass(frozen=True)
class ScalingAnalysis:
    """What :meth:`AutoScaler.analyze_metrics` found.

    Attributes:
        current: ``{"cpu": {...}, "memory": {...}}``: usage, request, limit, utilisation.
        recommended: ``{"requests": {"cpu", "memory"}, "limits": {"cpu", "memory"}}``
            as Kubernetes quantities (chart ``resources`` values).
        reasoning: One sentence per decision.
        source: ``"cgroup v2"`` or ``"psutil"``.
    """

    current: dict[str, Any]
    recommended: dict[str, Any]
    reasoning: list[str]
    source: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of ``/scaling/recommendations``."""
        return {
            "current_resources": self.current,
            "recommended_resources": self.recommended,
            "reasoning": self.reasoning,
            "source": self.source,
        }


@dataclass
class Usage:
    """One reading of this pod's CPU (cores, averaged over the sample) and memory (bytes)."""

    cpu_cores: float
    memory_bytes: int
    cpu_limit: float | None
    memory_limit: int | None
    source: str


@dataclass
class AutoScaler:
    """Horizontal autoscaling settings, and resource recommendations for one pod.

    Args:
        min_replicas: Fewest replicas (>= 1).
        max_replicas: Most replicas (>= min_replicas).
        target_cpu_utilization: Percent of the CPU request the HPA keeps pods at.
        target_memory_utilization: Percent of the memory request, likewise.
        scale_up_cooldown: Seconds of consistently higher recommendations before the
            HPA adds pods (its scale-up stabilization window).
        scale_down_cooldown: Seconds of consistently lower recommendations before it
            removes pods (its scale-down stabilization window).

    Raises:
        ConfigError: A value is out of range; the message names the argument.
    """

    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_utilization: int = 70
    target_memory_utilization: int = 80
    scale_up_cooldown: int = 0
    scale_down_cooldown: int = 300
    cgroup_root: Path = field(default=CGROUP_ROOT, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        checks = [
            ("min_replicas", self.min_replicas, 1, 1000),
            ("max_replicas", self.max_replicas, 1, 1000),
            ("target_cpu_utilization", self.target_cpu_utilization, 1, 100),
            ("target_memory_utilization", self.target_memory_utilization, 1, 100),
            ("scale_up_cooldown", self.scale_up_cooldown, 0, 3600),
            ("scale_down_cooldown", self.scale_down_cooldown, 0, 3600),
        ]
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"AutoScaler({name}={value!r}): expected a whole number from {low} to {high}",
                    field=name,
                )
        if self.min_replicas > self.max_replicas:
            raise ConfigError(
                f"AutoScaler(min_replicas={self.min_replicas}) must not exceed "
                f"max_replicas={self.max_replicas}",
                field="min_replicas",
            )
        _current[:] = [self]  # the latest only: /scaling/recommendations uses it

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AutoScaler:
        """The AUTOSCALING_* settings as an AutoScaler (cooldowns: Kubernetes' defaults)."""
        settings = settings or get_settings()
        return cls(
            min_replicas=settings.AUTOSCALING_MIN_REPLICAS,
            max_replicas=settings.AUTOSCALING_MAX_REPLICAS,
            target_cpu_utilization=settings.AUTOSCALING_CPU_TARGET,
            target_memory_utilization=settings.AUTOSCALING_MEMORY_TARGET,
        )

    def behavior(self) -> dict[str, Any]:
        """The HPA's ``behavior``: the cooldowns as stabilization windows, with rate policies.

        Scaling up may double the pods or add 4, whichever is more, every 15 s (the
        HPA's own default); scaling down removes at most half of them a minute.
        """
        return {
            "scaleUp": {
                "stabilizationWindowSeconds": self.scale_up_cooldown,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                ],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": self.scale_down_cooldown,
                "selectPolicy": "Min",
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            },
        }

    def chart_values(self) -> dict[str, Any]:
        """The chart's ``autoscaling`` values (merge them into the rest)."""
        return {
            "autoscaling": {
                "enabled": True,
                "minReplicas": self.min_replicas,
                "maxReplicas": self.max_replicas,
                "targetCPUUtilizationPercentage": self.target_cpu_utilization,
                "targetMemoryUtilizationPercentage": self.target_memory_utilization,
                "behavior": self.behavior(),
            }
        }

    async def analyze_metrics(self, settings: Settings | None = None) -> ScalingAnalysis:
        """Observe this pod's CPU and memory and recommend requests and limits.

        CPU is averaged over :data:`CPU_SAMPLE_SECONDS`; requests come from
        K8S_CPU_REQUEST/K8S_MEMORY_REQUEST (what the chart sets), limits from the
        cgroup when it has them, else from K8S_*_LIMIT.
        """
        settings = settings or get_settings()
        usage = await self.observe()
        return recommend(self, usage, settings)

    async def observe(self) -> Usage:
        """This pod's usage: cgroup v2 files when present, else psutil (this process)."""
        root = self.cgroup_root
        if (root / "cpu.stat").is_file() and (root / "memory.current").is_file():
            first, started = _cgroup_cpu_usec(root), self.clock()
            await asyncio.sleep(CPU_SAMPLE_SECONDS)
            elapsed = self.clock() - started
            second = _cgroup_cpu_usec(root)
            cores = max(second - first, 0) / 1e6 / elapsed if elapsed > 0 else 0.0
            return Usage(
                cpu_cores=cores,
                memory_bytes=int((root / "memory.current").read_text().split()[0]),
                cpu_limit=_cgroup_cpu_limit(root),
                memory_limit=_cgroup_memory_limit(root),
                source="cgroup v2",
            )
        import psutil

        process = psutil.Process()
        process.cpu_percent(None)
        await asyncio.sleep(CPU_SAMPLE_SECONDS)
        cores = process.cpu_percent(None) / 100
        return Usage(cores, int(process.memory_info().rss), None, None, "psutil")


def _cgroup_cpu_usec(root: Path) -> int:
    for line in (root / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    raise ValueError(f"{root / 'cpu.stat'} has no usage_usec line")


def _cgroup_cpu_limit(root: Path) -> float | None:
    path = root / "cpu.max"
    if not path.is_file():
        return None
    quota, _, period = path.read_text().strip().partition(" ")
    return None if quota == "max" else int(quota) / int(period or 100000)


def _cgroup_memory_limit(root: Path) -> int | None:
    path = root / "memory.max"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return None if text == "max" else int(text)


def cpu_quantity(cores: float) -> str:
    """Cores as millicores, rounded up to 10m (at least 10m)."""
    return f"{max(10, math.ceil(cores * 100) * 10)}m"


def memory_quantity(amount: float) -> str:
    """Bytes as Mi, rounded up to 16Mi (at least 32Mi)."""
    return f"{max(32, math.ceil(amount / _MI / 16) * 16)}Mi"


def recommend(scaler: AutoScaler, usage: Usage, settings: Settings) -> ScalingAnalysis:
    """Requests sized so that the observed usage sits at the targets; limits keep their ratio.

    Pure: the tests drive it with readings of their own.
    """
    cpu_request = cpu_cores(settings.K8S_CPU_REQUEST)
    cpu_limit = usage.cpu_limit or cpu_cores(settings.K8S_CPU_LIMIT)
    memory_request = memory_bytes(settings.K8S_MEMORY_REQUEST)
    memory_limit = usage.memory_limit or memory_bytes(settings.K8S_MEMORY_LIMIT)
    cpu_target, memory_target = scaler.target_cpu_utilization, scaler.target_memory_utilization
    cpu_used = 100 * usage.cpu_cores / cpu_request
    memory_used = 100 * usage.memory_bytes / memory_request
    current = {
        "cpu": {
            "usage": f"{usage.cpu_cores * 1000:.0f}m",
            "request": settings.K8S_CPU_REQUEST,
            "limit": cpu_quantity(cpu_limit) if usage.cpu_limit else settings.K8S_CPU_LIMIT,
            "utilization_percent": round(cpu_used, 1),
        },
        "memory": {
            "usage": f"{usage.memory_bytes / _MI:.0f}Mi",
            "request": settings.K8S_MEMORY_REQUEST,
            "limit": (
                memory_quantity(memory_limit) if usage.memory_limit else settings.K8S_MEMORY_LIMIT
            ),
            "utilization_percent": round(memory_used, 1),
        },
    }
    new_cpu = usage.cpu_cores * 100 / cpu_target
    new_memory = usage.memory_bytes * 100 / memory_target
    recommended = {
        "requests": {"cpu": cpu_quantity(new_cpu), "memory": memory_quantity(new_memory)},
        "limits": {
            "cpu": cpu_quantity(new_cpu * cpu_limit / cpu_request),
            "memory": memory_quantity(max(new_memory * memory_limit / memory_request, new_memory)),
        },
    }
    reasoning = [
        _why("CPU", cpu_used, cpu_target, current["cpu"], recommended["requests"]["cpu"]),
        _why(
            "memory",
            memory_used,
            memory_target,
            current["memory"],
            recommended["requests"]["memory"],
        ),
    ]
    if usage.memory_limit and usage.memory_bytes > 0.9 * usage.memory_limit:
        reasoning.append(
            "memory is above 90% of its limit: the kernel will OOM-kill the pod soon; "
            "raise the limit first"
        )
    reasoning.append(
        f"observed over {CPU_SAMPLE_SECONDS:g} s from {usage.source} in one pod: confirm "
        "with the fleet's history (a VerticalPodAutoscaler in recommendation mode) before acting"
    )
    return ScalingAnalysis(current, recommended, reasoning, usage.source)


def _why(what: str, used: float, target: int, current: dict[str, Any], new: str) -> str:
    if used > target * 1.1:
        verdict = f"above the {target}% target: raise the request to {new}"
    elif used < target * 0.5:
        verdict = f"well under the {target}% target: the request could shrink to {new}"
    else:
        verdict = f"near the {target}% target: keep the request ({new} would be exact)"
    return (
        f"{what} uses {current['usage']} of a {current['request']} request ({used:.0f}%), {verdict}"
    )


#: The AutoScaler made last in this process; ``/scaling/recommendations`` uses it.
_current: list[AutoScaler] = []


def current_autoscaler() -> AutoScaler:
    """The AutoScaler the app made last, else one from the AUTOSCALING_* settings."""
    return _current[-1] if _current else AutoScaler.from_settings()


async def recommendations_route() -> tuple[int, bytes, bytes]:
    """``GET /scaling/recommendations`` for ``zephyr serve`` (``zephyr.routes`` group)."""
    import json

    analysis = await current_autoscaler().analyze_metrics()
    return 200, b"application/json", json.dumps(analysis.as_dict()).encode()


def routes() -> dict[str, Any]:
    """The ``zephyr.routes`` provider: the paths ``zephyr serve`` adds for this package."""
    return {"/scaling/recommendations": recommendations_route}
