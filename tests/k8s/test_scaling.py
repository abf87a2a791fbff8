"""AutoScaler, MetricCollector, /scaling/recommendations, and the scale-up budget."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.k8s.chart_cases import MATRIX, NAMESPACE, RELEASE
from zephyr_core import ConfigError, Settings
from zephyr_deploy import AutoScaler, MetricCollector
from zephyr_deploy._budget import GOAL_SECONDS, scale_up_budgets
from zephyr_deploy._helm import render
from zephyr_deploy._scaling import Usage, recommend
from zephyr_deploy._values import merged


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    before = set(MetricCollector.names())
    yield registry
    for name in set(MetricCollector.names()) - before:
        MetricCollector.unregister(name, registry=registry)


def test_the_proposals_autoscaler_makes_hpa_values_with_behavior() -> None:
    autoscaler = AutoScaler(
        min_replicas=2,
        max_replicas=20,
        target_cpu_utilization=70,
        target_memory_utilization=80,
        scale_up_cooldown=300,
        scale_down_cooldown=600,
    )
    values = autoscaler.chart_values()
    manifests = render(
        merged(MATRIX["only-repository"], values), release=RELEASE, namespace=NAMESPACE
    )
    (hpa,) = [m.body for m in manifests if m.kind == "HorizontalPodAutoscaler"]
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 20)
    assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu", "memory"]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    import kubernetes_validate

    kubernetes_validate.validate(hpa, "1.31.0", strict=True)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"min_replicas": 0}, "min_replicas"),
        ({"min_replicas": 5, "max_replicas": 3}, "min_replicas"),
        ({"target_cpu_utilization": 120}, "target_cpu_utilization"),
        ({"scale_down_cooldown": -1}, "scale_down_cooldown"),
        ({"max_replicas": "10"}, "max_replicas"),
    ],
)
def test_bad_autoscaler_arguments_name_the_argument(
    arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        AutoScaler(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field and field in str(caught.value)


async def test_the_proposals_metric_examples_work_as_written(
    registry: CollectorRegistry, redis_url: str
) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    await redis.rpush("job_queue", "a", "b", "c")

    class Pool:
        def __init__(self) -> None:
            self.active_connections = {1, 2}

    connection_pool = Pool()

    @MetricCollector.metric("queue_length", registry=registry)
    async def get_queue_length():  # type: ignore[no-untyped-def]
        return await redis.llen("job_queue")

    @MetricCollector.metric("active_connections", registry=registry)
    async def get_active_connections():  # type: ignore[no-untyped-def]
        return len(connection_pool.active_connections)

    try:
        values = await MetricCollector.collect()
        assert (values["queue_length"], values["active_connections"]) == (3.0, 2.0)
        text = generate_latest(registry).decode()
        assert "queue_length 3.0" in text and "active_connections 2.0" in text
        assert await get_queue_length() == 3  # still the function it was
    finally:
        await redis.aclose()


async def test_a_failing_or_slow_gauge_is_nan_and_the_others_still_read(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MetricCollector, "timeout", 0.2)
    never = asyncio.Event()

    @MetricCollector.metric("broken_gauge", registry=registry)
    async def broken() -> int:
        raise ConnectionError("redis is down")

    @MetricCollector.metric("stuck_gauge", registry=registry)
    async def stuck() -> int:
        await never.wait()
        return 1

    @MetricCollector.metric("fine_gauge", registry=registry)
    async def fine() -> int:
        return 7

    values = await MetricCollector.collect()
    assert math.isnan(values["broken_gauge"]) and math.isnan(values["stuck_gauge"])
    assert values["fine_gauge"] == 7.0


def test_bad_metrics_are_refused_at_decoration(registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigError, match="queue length"):
        MetricCollector.metric("queue length", registry=registry)
    with pytest.raises(ConfigError, match="async def"):

        @MetricCollector.metric("sync_gauge", registry=registry)
        def sync() -> int:  # type: ignore[type-var]
            return 1


def fake_cgroup(root: Path, *, usage_usec: int, memory: int, cpu_max: str, memory_max: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\n")
    (root / "memory.current").write_text(f"{memory}\n")
    (root / "cpu.max").write_text(f"{cpu_max}\n")
    (root / "memory.max").write_text(f"{memory_max}\n")
    return root


async def test_analysis_reads_cgroup_v2_usage_and_limits(tmp_path: Path) -> None:
    """A cgroup folder laid out as the kernel does; the CPU counter moves between samples."""
    root = fake_cgroup(
        tmp_path / "cg", usage_usec=1_000_000, memory=400 * 2**20, cpu_max="100000 100000",
        memory_max=str(512 * 2**20),
    )  # fmt: skip
    ticks = iter([100.0, 100.5])

    def clock() -> float:
        # The second reading: the counter advanced 0.3 s of CPU over the 0.5 s sample.
        value = next(ticks)
        if value > 100:
            fake_cgroup(root, usage_usec=1_300_000, memory=400 * 2**20,
                        cpu_max="100000 100000", memory_max=str(512 * 2**20))  # fmt: skip
        return value

    scaler = AutoScaler(cgroup_root=root, clock=clock)
    analysis = await scaler.analyze_metrics(Settings())
    assert analysis.source == "cgroup v2"
    assert analysis.current["cpu"]["usage"] == "600m"
    assert analysis.current["cpu"]["limit"] == "1000m"
    assert analysis.current["memory"]["usage"] == "400Mi"
    # 600m at a 70% target is 858m -> 860m; 400Mi at 80% is 500Mi -> 512Mi.
    assert analysis.recommended["requests"] == {"cpu": "860m", "memory": "512Mi"}
    assert "above the 70% target" in analysis.reasoning[0]
    assert any("OOM" not in r for r in analysis.reasoning)


def test_recommendations_keep_the_limit_ratio_and_warn_near_the_memory_limit() -> None:
    usage = Usage(cpu_cores=0.1, memory_bytes=500 * 2**20, cpu_limit=None,
                  memory_limit=512 * 2**20, source="cgroup v2")  # fmt: skip
    analysis = recommend(AutoScaler(), usage, Settings())
    assert analysis.recommended["requests"]["cpu"] == "150m"  # 100m / 70%, rounded up
    assert analysis.recommended["limits"]["cpu"] == "290m"  # the 250m:500m ratio kept
    assert any("OOM" in line for line in analysis.reasoning)


async def test_psutil_is_the_fallback_without_cgroup_files(tmp_path: Path) -> None:
    analysis = await AutoScaler(cgroup_root=tmp_path / "none").analyze_metrics(Settings())
    assert analysis.source == "psutil"
    assert re.fullmatch(r"\d+Mi", analysis.current["memory"]["usage"])


async def test_zephyr_serve_answers_scaling_recommendations_and_async_gauges(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """The real wrapper `zephyr serve` puts around an app, over HTTP (in-process ASGI)."""
    from zephyr_core._asgi import wrap

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @MetricCollector.metric("orders_waiting")
    async def orders_waiting() -> int:
        return 42

    try:
        transport = httpx.ASGITransport(app=wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/scaling/recommendations")
            assert response.status_code == 200
            body = response.json()
            assert set(body) >= {"current_resources", "recommended_resources", "reasoning"}
            assert set(body["recommended_resources"]["requests"]) == {"cpu", "memory"}
            metrics = await client.get("/metrics")
            assert "orders_waiting 42.0" in metrics.text
    finally:
        from prometheus_client import REGISTRY

        MetricCollector.unregister("orders_waiting", registry=REGISTRY)


def budgets(values: dict[str, object]) -> dict[str, object]:
    manifests = render(values, release=RELEASE, namespace=NAMESPACE)
    return {b.component: b for b in scale_up_budgets(manifests)}


def test_scale_up_budget_of_the_default_values_is_under_two_minutes() -> None:
    found = budgets(merged(MATRIX["keda"], {"autoscaling": {"enabled": True}}))
    web, worker = found["web"], found["worker"]
    assert dict(web.steps) == {  # type: ignore[attr-defined]
        "metrics-server resolution": 15,
        "HPA sync period": 15,
        "scale-up stabilization window": 0,
        "startup probe, worst case": 60,
        "first readiness period": 5,
    }
    assert web.total == 95 and web.within_goal  # type: ignore[attr-defined]
    assert dict(worker.steps)["KEDA polling interval"] == 15  # type: ignore[attr-defined]
    assert worker.total == 100 and worker.total < GOAL_SECONDS  # type: ignore[attr-defined]


def test_the_proposals_five_minute_scale_up_cooldown_breaks_the_two_minute_budget() -> None:
    values = merged(MATRIX["only-repository"], AutoScaler(scale_up_cooldown=300).chart_values())
    (web,) = budgets(values).values()
    assert web.total == 395 and not web.within_goal  # type: ignore[attr-defined]


async def test_the_proposals_recommendations_route_runs_as_written() -> None:
    """The proposal's FastAPI route, imports adapted (zephyr.scaling -> zephyr_deploy)."""
    from fastapi import FastAPI

    app = FastAPI()
    autoscaler = AutoScaler(
        min_replicas=2,
        max_replicas=20,
        target_cpu_utilization=70,
        target_memory_utilization=80,
        scale_up_cooldown=300,
        scale_down_cooldown=600,
    )

    @app.get("/scaling/recommendations")
    async def get_scaling_recommendations():  # type: ignore[no-untyped-def]
        metrics = await autoscaler.analyze_metrics()
        return {
            "current_resources": metrics.current,
            "recommended_resources": metrics.recommended,
            "reasoning": metrics.reasoning,
        }

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = (await client.get("/scaling/recommendations")).json()
    assert body["current_resources"]["cpu"]["request"] == "250m"
    assert len(body["reasoning"]) >= 3
