"""The chart on Redis Sentinel: the pods' URLs, KEDA's redis-sentinel trigger, the refusals.

Rendered by the real Helm engine; the KEDA objects checked against KEDA's CRD schemas,
the ConfigMap's URLs read back by our own URL parser (what the pods do at start), and
``zephyr k8s generate`` run on Sentinel settings. Renders only: no server is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s.chart_cases import KUBE_VERSIONS, MATRIX, NAMESPACE, RELEASE, SENTINELS
from tests.k8s.cli import zephyr
from tests.k8s.test_chart import by_kind, crd_schema, rendered
from zephyr_core import ConfigError, Settings
from zephyr_deploy._helm import render, render_text

#: KEDA's redis-sentinel scaler: the trigger metadata and TriggerAuthentication parameters
#: it reads (keda.sh/docs/2.12+/scalers/redis-sentinel-lists; databaseIndex since 2.12).
#: A misspelt key is ignored by KEDA without a word, so the chart must use these names.
SENTINEL_METADATA = {
    "addresses", "hosts", "ports", "sentinelMaster", "listName", "listLength",
    "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl",
}  # fmt: skip
SENTINEL_AUTH = {"username", "password", "sentinelUsername", "sentinelPassword"}
PRIORITY_LISTS = ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]


def config_data(case: str) -> dict[str, str]:
    (config,) = by_kind(case, "ConfigMap")
    data: dict[str, str] = config["data"] or {}
    return data


def objects_of(values: dict[str, Any]) -> list[dict[str, Any]]:
    texts = render_text(values, release=RELEASE, namespace=NAMESPACE)
    return [
        body
        for source, text in sorted(texts.items())
        if source.endswith(".yaml")
        for body in yaml.safe_load_all(text)
        if body
    ]


def test_the_configmap_hands_the_pods_the_sentinels_with_each_database_and_the_master() -> None:
    data = config_data("redis-sentinel")
    assert data["JOB_QUEUE_URL"] == f"{SENTINELS}/0"
    assert data["CACHE_URL"] == f"{SENTINELS}/1"
    assert data["REDIS_SENTINEL_MASTER"] == "mymaster"
    # What the pods make of it at start: Settings from these variables, our URL parser.
    settings = Settings(**{k: v for k, v in data.items() if k != "ZEPHYR_JOBS"})
    jobs = settings.redis_topology(settings.JOB_QUEUE_URL)
    cache = settings.redis_topology(settings.CACHE_URL)
    assert jobs.describe() == "Sentinel master 'mymaster' via 3 Sentinels, db 0"
    assert cache.describe() == "Sentinel master 'mymaster' via 3 Sentinels, db 1"
    assert jobs.nodes == (("s1.prod.svc", 26379), ("s2.prod.svc", 26379), ("s3.prod.svc", 26379))
    # A Redis of your own: the built-in trial Redis stays off (redis.enabled auto).
    assert not [b for b in rendered("redis-sentinel") if b["kind"] == "StatefulSet"]


def test_keda_scales_on_sentinel_with_the_redis_sentinel_scaler() -> None:
    (scaled,) = by_kind("keda-sentinel", "ScaledObject")
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == PRIORITY_LISTS + [
        name.replace("celery", "mail") for name in PRIORITY_LISTS
    ]
    for trigger in triggers:
        assert trigger["type"] == "redis-sentinel"
        metadata = trigger["metadata"]
        assert set(metadata) <= SENTINEL_METADATA, set(metadata) - SENTINEL_METADATA
        assert metadata["addresses"] == "s1.prod.svc:26379,s2.prod.svc:26379,s3.prod.svc:26379"
        assert metadata["sentinelMaster"] == "mymaster"
        assert metadata["databaseIndex"] == "0"  # JOB_QUEUE_URL's database
        assert metadata["listLength"] == "20"
        assert "enableTLS" not in metadata
        assert trigger["authenticationRef"] == {"name": "shop-zephyr-app-worker"}
    jsonschema.validate(scaled, crd_schema("ScaledObject"))


def test_the_trigger_authentication_reads_both_passwords_from_existing_secret() -> None:
    (auth,) = by_kind("keda-sentinel", "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "shop-env", "key": "REDIS_PASSWORD"},
        {"parameter": "sentinelPassword", "name": "shop-env", "key": "REDIS_SENTINEL_PASSWORD"},
    ]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} <= SENTINEL_AUTH
    jsonschema.validate(auth, crd_schema("TriggerAuthentication"))


def test_only_the_sentinels_password_gives_a_one_entry_authentication() -> None:
    values = {
        **MATRIX["keda-sentinel"],
        "worker": {"autoscaling": {"enabled": True, "sentinelPasswordKey": "SENTINEL_PW"}},
    }
    (auth,) = [b for b in objects_of(values) if b["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "sentinelPassword", "name": "shop-env", "key": "SENTINEL_PW"}
    ]


def test_sentinels_over_tls_turn_on_keda_tls() -> None:
    tls = SENTINELS.replace("sentinel://", "sentinels://")
    values = {**MATRIX["keda-sentinel"], "redis": {"url": tls, "sentinelMaster": "mymaster"}}
    bodies = objects_of(values)
    (scaled,) = [b for b in bodies if b["kind"] == "ScaledObject"]
    assert {t["metadata"]["enableTLS"] for t in scaled["spec"]["triggers"]} == {"true"}
    (config,) = [b for b in bodies if b["kind"] == "ConfigMap"]
    assert config["data"]["JOB_QUEUE_URL"] == f"{tls}/0"
    jsonschema.validate(scaled, crd_schema("ScaledObject"))


def test_keda_reads_sentinels_of_its_own_when_the_pods_urls_are_in_the_secret() -> None:
    """worker.autoscaling.redisUrl: the pods keep existingSecret's URLs (with passwords)."""
    values = {
        **MATRIX["existing-secret"],
        "redis": {"sentinelMaster": "mymaster"},
        "worker": {
            "autoscaling": {
                "enabled": True,
                "redisUrl": SENTINELS,
                "sentinelPasswordKey": "REDIS_SENTINEL_PASSWORD",
            }
        },
    }
    bodies = objects_of(values)
    (config,) = [b for b in bodies if b["kind"] == "ConfigMap"]
    assert "JOB_QUEUE_URL" not in config["data"] and "CACHE_URL" not in config["data"]
    assert config["data"]["REDIS_SENTINEL_MASTER"] == "mymaster"
    (scaled,) = [b for b in bodies if b["kind"] == "ScaledObject"]
    assert {t["type"] for t in scaled["spec"]["triggers"]} == {"redis-sentinel"}
    assert not [b for b in bodies if b["kind"] == "StatefulSet"]
    for body in bodies:
        if body["apiVersion"] == "keda.sh/v1alpha1":
            jsonschema.validate(body, crd_schema(body["kind"]))
        elif body["kind"] != "Pod":
            for kube in KUBE_VERSIONS:
                kubernetes_validate.validate(body, kube, strict=True)


def test_notes_name_the_sentinel_master() -> None:
    notes = render_text(MATRIX["redis-sentinel"], release=RELEASE, namespace=NAMESPACE)[
        "zephyr-app/templates/NOTES.txt"
    ]
    assert 'Sentinel master "mymaster" via 3 Sentinels' in notes
    trial = render_text({}, release=RELEASE, namespace=NAMESPACE)["zephyr-app/templates/NOTES.txt"]
    assert "FOR TRIALS ONLY" in trial and "redis.sentinelMaster=" in trial


#: Values the chart refuses, and the words its one-line message must hold. No message
#: may quote a password ("s3cret").
REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "sentinel without master": (
        {"redis": {"url": SENTINELS}},
        ("redis.sentinelMaster is required", "sentinel monitor"),
    ),
    "cluster in redis.url": (
        {"redis": {"url": "redis+cluster://c1:7000,c2:7001"}},
        ("redis.url", "Redis Cluster", "caches only", "JOB_QUEUE_URL", "sentinel://"),
    ),
    "cluster over tls in redis.url": (
        {"redis": {"url": "rediss+cluster://c1:7000"}},
        ("redis.url", "Redis Cluster"),
    ),
    "cluster for keda": (
        {"worker": {"autoscaling": {"redisUrl": "redis+cluster://c1:7000"}}},
        ("worker.autoscaling.redisUrl", "Redis Cluster"),
    ),
    "cluster as the job queue in settings": (
        {"settings": {"JOB_QUEUE_URL": "redis+cluster://c1:7000/0"}},
        ("settings.JOB_QUEUE_URL", "Redis Cluster", "one keyspace"),
    ),
    "password in a sentinel redis.url": (
        {"redis": {"url": "sentinel://:s3cret@s1:26379;sentinel://s2:26379"}},
        ("redis.url must not hold a password", "existingSecret", "sentinelPasswordKey"),
    ),
    "password in a single redis.url": (
        {"redis": {"url": "redis://:s3cret@redis.prod:6379"}},
        ("redis.url must not hold a password", "existingSecret"),
    ),
    "database in a sentinel part": (
        {"redis": {"url": "sentinel://s1:26379/0", "sentinelMaster": "m"}},
        ("redis.url", "sentinel://host:port", "appends the databases"),
    ),
    "master name in the url": (
        {"redis": {"url": "sentinel://s1:26379?master_name=m", "sentinelMaster": "m"}},
        ("redis.url", "redis.sentinelMaster"),
    ),
    "mixed sentinel schemes": (
        {"redis": {"url": "sentinel://s1:26379;sentinels://s2:26379", "sentinelMaster": "m"}},
        ("redis.url mixes sentinel:// and sentinels://",),
    ),
    "unknown scheme": (
        {"redis": {"url": "http://redis.prod:6379"}},
        ("redis.url", "redis://host:6379", "sentinel://"),
    ),
    "master with a single server": (
        {"redis": {"url": "redis://redis.prod:6379", "sentinelMaster": "m"}},
        ("redis.sentinelMaster is set", "redis.url names one server"),
    ),
    "bad master name": (
        {"redis": {"url": SENTINELS, "sentinelMaster": "my master"}},
        ("redis.sentinelMaster",),
    ),
    "sentinel password key without a secret": (
        {
            "jobs": "shop.jobs",
            "redis": {"url": SENTINELS, "sentinelMaster": "m"},
            "worker": {"autoscaling": {"enabled": True, "sentinelPasswordKey": "PW"}},
        },
        ("worker.autoscaling.sentinelPasswordKey", "existingSecret is empty"),
    ),
    "keda database without redisUrl": (
        {
            **MATRIX["keda-sentinel"],
            "worker": {"autoscaling": {"enabled": True, "databaseIndex": 2}},
        },
        ("worker.autoscaling.databaseIndex (2)", "worker.autoscaling.redisUrl"),
    ),
    "sentinel password key on one server": (
        {
            **MATRIX["keda"],
            "worker": {"autoscaling": {"enabled": True, "sentinelPasswordKey": "PW"}},
        },
        ("worker.autoscaling.sentinelPasswordKey", "not Sentinels"),
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_values_stop_the_render_naming_the_value(name: str) -> None:
    values, words = REFUSED[name]
    with pytest.raises(ConfigError) as caught:
        render({**values}, release=RELEASE, namespace=NAMESPACE)
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message
    for word in words:
        assert word in message, message


# ---- zephyr k8s generate on Sentinel settings ------------------------------------------

ENV = {
    "ZEPHYR_APP": "shop.main:app",
    "ZEPHYR_JOBS": "shop.jobs",
    "CONTAINER_REGISTRY": "ghcr.io/acme",
    "CONTAINER_TAG": "2.4.1",
    "K8S_NAMESPACE": "production",
}
SENTINEL_QUEUE = "sentinel://:s3cret@s1.prod:26379;sentinel://:s3cret@s2.prod:26379/0"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop-project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "2.4.1"\n')
    return root


def generated(project: Path, env: dict[str, str], *sets: str) -> list[dict[str, Any]]:
    args = [part for value in sets for part in ("--set", value)]
    result = zephyr("k8s", "generate", *args, cwd=project, env={**ENV, **env})
    assert result.code == 0, result.err
    assert "s3cret" not in result.out and "sentinel-pw" not in result.out
    return [body for body in yaml.safe_load_all(result.out) if body]


@pytest.mark.parametrize(
    "env",
    [
        {"JOB_QUEUE_URL": f"{SENTINEL_QUEUE}?master_name=jobs-master"},
        {"JOB_QUEUE_URL": SENTINEL_QUEUE, "REDIS_SENTINEL_MASTER": "jobs-master"},
    ],
    ids=["master in the url", "REDIS_SENTINEL_MASTER"],
)
def test_generate_on_sentinel_settings_scales_through_the_sentinels(
    project: Path, env: dict[str, str]
) -> None:
    env = {**env, "REDIS_SENTINEL_PASSWORD": "sentinel-pw"}
    bodies = generated(project, env, "existingSecret=shop-env", "worker.autoscaling.enabled=true")
    assert not [
        b for b in bodies if b["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
    ]
    (config,) = [b for b in bodies if b["kind"] == "ConfigMap"]
    assert config["data"]["REDIS_SENTINEL_MASTER"] == "jobs-master"
    assert "JOB_QUEUE_URL" not in config["data"]  # the Secret's, with its password
    (scaled,) = [b for b in bodies if b["kind"] == "ScaledObject"]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis-sentinel"
        assert trigger["metadata"]["addresses"] == "s1.prod:26379,s2.prod:26379"
        assert trigger["metadata"]["sentinelMaster"] == "jobs-master"
    (auth,) = [b for b in bodies if b["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "sentinelPassword", "name": "shop-env", "key": "REDIS_SENTINEL_PASSWORD"}
    ]
    for body in bodies:
        if body["apiVersion"] == "keda.sh/v1alpha1":
            jsonschema.validate(body, crd_schema(body["kind"]))


def test_generate_on_sentinels_over_tls_without_a_sentinel_password(project: Path) -> None:
    queue = SENTINEL_QUEUE.replace("sentinel://", "sentinels://") + "?master_name=m"
    bodies = generated(
        project,
        {"JOB_QUEUE_URL": queue},
        "existingSecret=shop-env",
        "worker.autoscaling.enabled=true",
    )
    (scaled,) = [b for b in bodies if b["kind"] == "ScaledObject"]
    assert {t["metadata"]["enableTLS"] for t in scaled["spec"]["triggers"]} == {"true"}
    assert not [b for b in bodies if b["kind"] == "TriggerAuthentication"]


def test_generate_without_a_secret_suggests_the_sentinels_never_the_password(
    project: Path,
) -> None:
    env = {**ENV, "JOB_QUEUE_URL": f"{SENTINEL_QUEUE}?master_name=m"}
    result = zephyr("k8s", "generate", cwd=project, env=env)
    assert result.code == 2 and result.out == ""
    assert "s3cret" not in result.err and "Traceback" not in result.err
    (line,) = [line for line in result.err.splitlines() if line.lower().startswith("error")]
    assert "existingSecret" in line
    assert "redis.url=sentinel://s1.prod:26379;sentinel://s2.prod:26379" in line


def test_generate_on_a_local_sentinel_gets_the_built_in_trial_redis(project: Path) -> None:
    local = "sentinel://127.0.0.1:26379;sentinel://localhost:26380/0?master_name=m"
    bodies = generated(project, {"JOB_QUEUE_URL": local})
    assert [b for b in bodies if b["kind"] == "StatefulSet"]
    (config,) = [b for b in bodies if b["kind"] == "ConfigMap"]
    assert "REDIS_SENTINEL_MASTER" not in config["data"]


def test_generate_gives_keda_the_queue_database_and_asks_for_the_redis_password_key(
    project: Path,
) -> None:
    env = {**ENV, "JOB_QUEUE_URL": SENTINEL_QUEUE.replace("/0", "/3") + "?master_name=m"}
    sets = ("--set", "existingSecret=shop-env", "--set", "worker.autoscaling.enabled=true")
    warned = zephyr("k8s", "generate", *sets, cwd=project, env=env)
    assert warned.code == 0, warned.err
    (warning,) = [line for line in warned.err.splitlines() if line.startswith("warning")]
    assert "password" in warning and "worker.autoscaling.passwordKey" in warning
    assert "s3cret" not in warned.err
    (scaled,) = [b for b in yaml.safe_load_all(warned.out) if b and b["kind"] == "ScaledObject"]
    assert {t["metadata"]["databaseIndex"] for t in scaled["spec"]["triggers"]} == {"3"}
    told = zephyr(
        "k8s", "generate", *sets, "--set", "worker.autoscaling.passwordKey=REDIS_PASSWORD",
        cwd=project, env=env,
    )  # fmt: skip
    assert told.code == 0, told.err
    assert not [line for line in told.err.splitlines() if line.startswith("warning")]
    (auth,) = [
        b for b in yaml.safe_load_all(told.out) if b and b["kind"] == "TriggerAuthentication"
    ]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "shop-env", "key": "REDIS_PASSWORD"}
    ]
