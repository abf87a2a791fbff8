"""``zephyr k8s generate``: the shipped chart rendered from Settings, the one process list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s.chart_cases import NAMESPACE, RELEASE
from tests.k8s.cli import zephyr
from zephyr_deploy._helm import render
from zephyr_deploy._k8s.order import APPLY_ORDER
from zephyr_deploy._processes import container_processes

ENV = {
    "ZEPHYR_APP": "shop.main:app",
    "ZEPHYR_JOBS": "shop.jobs",
    "CONTAINER_REGISTRY": "ghcr.io/acme",
    "CONTAINER_TAG": "2.4.1",
    "K8S_NAMESPACE": "production",
    "K8S_REPLICAS": "5",
    "K8S_CPU_LIMIT": "1000m",
    "K8S_MEMORY_LIMIT": "1Gi",
    "AUTOSCALING_ENABLED": "true",
    "AUTOSCALING_MAX_REPLICAS": "20",
    "JOB_WORKER_CONCURRENCY": "6",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop-project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "2.4.1"\n')
    return root


def objects(text: str) -> list[dict[str, Any]]:
    return [body for body in yaml.safe_load_all(text) if body]


def containers(bodies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for b in bodies
        if b["kind"] == "Deployment"
        for c in b["spec"]["template"]["spec"]["containers"]
    }


def test_generate_renders_the_chart_from_settings(project: Path) -> None:
    result = zephyr("k8s", "generate", "--set", "existingSecret=shop-env", cwd=project, env=ENV)
    assert result.code == 0, result.err
    bodies = objects(result.out)
    assert {b["metadata"]["namespace"] for b in bodies} == {"production"}
    by_name = containers(bodies)
    assert set(by_name) == {"web", "worker", "beat"}  # Flower is off until asked
    web = by_name["web"]
    assert web["image"] == "ghcr.io/acme/shop:2.4.1"
    assert web["resources"]["limits"] == {"cpu": "1000m", "memory": "1Gi"}
    assert web["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    (hpa,) = [b for b in bodies if b["kind"] == "HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    assert [m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]] == [
        70,
        80,
    ]
    assert "--concurrency" in by_name["worker"]["command"]
    assert (
        by_name["worker"]["command"][by_name["worker"]["command"].index("--concurrency") + 1] == "6"
    )
    for body in bodies:
        if body["apiVersion"] != "keda.sh/v1alpha1":
            kubernetes_validate.validate(body, "1.31.0", strict=True)


def test_the_chart_runs_the_process_list_of_zephyr_up_and_compose(project: Path) -> None:
    """generate passes the list's commands; the chart's own defaults (helm install) agree."""
    expected = {p.name: p for p in container_processes("shop.main:app", "shop.jobs")}
    generated = zephyr(
        "k8s",
        "generate",
        "--set",
        "flower.enabled=true",
        "--set",
        "existingSecret=s",
        cwd=project,
        env=ENV,
    )
    assert generated.code == 0, generated.err
    plain = render(
        {
            "app": "shop.main:app",
            "jobs": "shop.jobs",
            "existingSecret": "s",
            "flower": {"enabled": True},
        },
        release=RELEASE,
        namespace=NAMESPACE,
    )
    for by_name in (containers(objects(generated.out)), containers([m.body for m in plain])):
        assert set(by_name) == set(expected)
        for name, process in expected.items():
            command = by_name[name]["command"]
            if name == "worker":
                command = command[: command.index("--concurrency")]
            assert command == list(process.command), name
            ports = [p["containerPort"] for p in by_name[name].get("ports", [])]
            assert ports == ([process.port] if process.port else []), name
        grace = {
            b["spec"]["template"]["spec"]["containers"][0]["name"]: b["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ]
            for b in (objects(generated.out))
            if b["kind"] == "Deployment"
        }
        assert grace["worker"] == expected["worker"].stop_grace


def test_output_folder_holds_one_file_per_object_in_apply_order(
    project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    result = zephyr(
        "k8s", "generate", "-o", str(out), "--set", "redis.enabled=true", cwd=project, env=ENV
    )
    assert result.code == 0, result.err
    files = sorted(out.glob("*.yaml"))
    kinds = [yaml.safe_load(f.read_text())["kind"] for f in files]
    assert kinds == sorted(kinds, key=APPLY_ORDER.index)
    assert (
        kinds.index("ConfigMap")
        < kinds.index("Deployment")
        < kinds.index("HorizontalPodAutoscaler")
    )
    assert f"wrote {len(files)} objects" in result.err
    # Run again with fewer objects: no stale file is left behind.
    again = zephyr(
        "k8s", "generate", "-o", str(out), "--set", "existingSecret=s", cwd=project, env=ENV
    )
    assert again.code == 0
    assert len(list(out.glob("*.yaml"))) < len(files)
    assert not any("redis" in f.name for f in out.glob("*.yaml"))


def redis_objects(bodies: list[dict[str, Any]]) -> list[str]:
    return [
        f"{b['kind']}/{b['metadata']['name']}"
        for b in bodies
        if b["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
    ]


def config_data(bodies: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = [b for b in bodies if b["kind"] == "ConfigMap"]
    return config["data"] or {}


def test_local_redis_settings_get_the_built_in_trial_redis(project: Path) -> None:
    """The defaults (localhost) reach no pod: generate renders what a bare helm install does."""
    result = zephyr("k8s", "generate", cwd=project, env={**ENV, "CACHE_URL": "redis://127.0.0.1/1"})
    assert result.code == 0, result.err
    bodies = objects(result.out)
    assert "StatefulSet/shop-zephyr-app-redis" in redis_objects(bodies)
    assert (
        config_data(bodies)["JOB_QUEUE_URL"]
        == "redis://shop-zephyr-app-redis.production.svc:6379/0"
    )


@pytest.mark.parametrize(
    "remote",
    [
        {"JOB_QUEUE_URL": "redis://:s3cret@redis.prod:6379/0"},
        {"CACHE_URL": "rediss://:s3cret@cache.prod:6380/1"},
    ],
    ids=["JOB_QUEUE_URL", "CACHE_URL"],
)
def test_a_remote_redis_in_settings_never_turns_on_the_built_in_one(
    project: Path, remote: dict[str, str]
) -> None:
    (setting,) = remote
    env = {**ENV, **remote}
    told = zephyr("k8s", "generate", "--set", "existingSecret=shop-env", cwd=project, env=env)
    assert told.code == 0, told.err
    bodies = objects(told.out)
    assert redis_objects(bodies) == []
    assert not {"JOB_QUEUE_URL", "CACHE_URL"} & set(config_data(bodies))  # the Secret's files
    assert "s3cret" not in told.out
    by_url = zephyr(
        "k8s", "generate", "--set", "redis.url=redis://redis.prod:6379", cwd=project, env=env
    )
    assert by_url.code == 0, by_url.err
    assert redis_objects(objects(by_url.out)) == []
    # Nothing tells the pods where it is (its URL may hold a password: never passed on).
    untold = zephyr("k8s", "generate", cwd=project, env=env)
    assert untold.code == 2, untold.err
    assert untold.out == "" and "Traceback" not in untold.err and "s3cret" not in untold.err
    (line,) = [line for line in untold.err.splitlines() if line.lower().startswith("error")]
    for word in (setting, "built-in trial Redis stays off", "existingSecret", "redis.url"):
        assert word in line


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({"K8S_REPLICAS": "2000"}, (), ("replicaCount", "2,000", "K8S_REPLICAS")),
        ({"K8S_MEMORY_LIMIT": "-1Gi"}, (), ("K8S_MEMORY_LIMIT", "-1Gi")),
        ({"CONTAINER_TAG": "latest"}, (), ("CONTAINER_TAG", "latest")),
        ({}, ("--set", "replicaCount=three"), ("replicaCount", "string")),
        ({}, ("--set", "nope"), ("--set", "KEY=VALUE")),
        (
            {},
            ("--set", "worker.autoscaling.minReplicas=11"),
            ("worker.autoscaling.minReplicas (11)",),
        ),
        ({"ZEPHYR_APP": "shop"}, (), ("ZEPHYR_APP", "shop")),
        ({"K8S_NAMESPACE": "Prod_EU"}, (), ("K8S_NAMESPACE", "Prod_EU")),
        ({}, ("--release", "Shop_1"), ("--release", "Shop_1")),
    ],
)
def test_bad_input_is_one_line_exit_2_naming_the_value(
    project: Path, env: dict[str, str], args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    result = zephyr("k8s", "generate", *args, cwd=project, env={**ENV, **env})
    assert result.code == 2, result.err
    assert result.out == ""
    assert "Traceback" not in result.err
    (line,) = [line for line in result.err.splitlines() if line.lower().startswith("error")]
    for word in words:
        assert word in line
