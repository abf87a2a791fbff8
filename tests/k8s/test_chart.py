"""The shipped chart, rendered by the real Helm engine and checked by Kubernetes' own schemas.

Every rendering of the matrix lints clean under ``--strict``, every built-in object
passes ``kubernetes-validate`` (strict) for Kubernetes 1.31, 1.34 and 1.36, the KEDA
objects pass KEDA's own CRD schemas, and every pod is under the restricted Pod
Security Standard.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s.chart_cases import BAD_VALUES, KUBE_VERSIONS, MATRIX, NAMESPACE, RELEASE
from zephyr_core import ConfigError
from zephyr_deploy._helm import chart_dir, render, render_text

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "zephyr-app"
SCHEMAS = REPO.parent / "shared" / "schemas"
CRD_KINDS = {"keda.sh/v1alpha1": ("ScaledObject", "TriggerAuthentication")}
WORKLOADS = ("Deployment", "StatefulSet")


@cache
def rendered(case: str) -> list[dict[str, Any]]:
    """Every object of a rendering, ``helm test`` pod included."""
    texts = render_text(MATRIX[case], release=RELEASE, namespace=NAMESPACE)
    return [
        body
        for source, text in sorted(texts.items())
        if source.endswith(".yaml")
        for body in yaml.safe_load_all(text)
        if body
    ]


def by_kind(case: str, kind: str) -> list[dict[str, Any]]:
    return [body for body in rendered(case) if body["kind"] == kind]


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    plural = {"ScaledObject": "scaledobjects", "TriggerAuthentication": "triggerauthentications"}
    crd = yaml.safe_load((SCHEMAS / f"keda.sh_{plural[kind]}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"] and v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_the_repository_keeps_one_copy_of_the_chart() -> None:
    assert chart_dir() == CHART
    copies = [
        p.parent
        for p in REPO.rglob("Chart.yaml")
        if ".venv" not in p.parts and "build" not in p.parts
    ]
    assert copies == [CHART]


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_lints_clean_under_strict(case: str, kube: str) -> None:
    report = helm_python.lint(
        CHART, MATRIX[case], strict=True, kube_version=f"v{kube}", namespace=NAMESPACE
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_passes_the_kubernetes_and_keda_schemas(case: str) -> None:
    checked = 0
    for body in rendered(case):
        if body["apiVersion"] in CRD_KINDS:
            jsonschema.validate(body, crd_schema(body["kind"]))
        elif body["apiVersion"] == "monitoring.coreos.com/v1":
            assert body["kind"] == "ServiceMonitor"  # the Prometheus Operator's; no schema here
        else:
            for kube in KUBE_VERSIONS:
                kubernetes_validate.validate(body, kube, strict=True)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_pod_is_under_the_restricted_pod_security_standard(case: str) -> None:
    pods = [b["spec"]["template"]["spec"] for b in rendered(case) if b["kind"] in WORKLOADS]
    pods += [b["spec"] for b in rendered(case) if b["kind"] == "Pod"]
    assert pods
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts_tmp = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "hostPort" not in json.dumps(container)
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if container["name"] != "ready":  # the helm test pod writes nothing
                assert tmp and tmp[0]["name"] in mounts_tmp
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_names_the_release_namespace_and_the_standard_labels(case: str) -> None:
    for body in rendered(case):
        metadata = body["metadata"]
        assert metadata["namespace"] == NAMESPACE, (body["kind"], metadata["name"])
        labels = metadata["labels"]
        for label in ("name", "instance", "version", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{label}" in labels, (body["kind"], label)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_container_has_probes(case: str) -> None:
    for body in rendered(case):
        if body["kind"] not in WORKLOADS:
            continue
        for container in body["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, container["name"]
            if container["name"] != "beat":  # beat serves nothing: no readiness to report
                assert "readinessProbe" in container, container["name"]


def test_the_web_probes_health_live_and_ready_with_a_startup_probe() -> None:
    (web,) = [d for d in by_kind("only-repository", "Deployment")]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_the_worker_liveness_reads_a_heartbeat_file_not_celery_inspect() -> None:
    worker = deployment("existing-secret", "worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    probe = " ".join(container["livenessProbe"]["exec"]["command"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ZEPHYR_HEARTBEAT_FILE"] in probe and "st_mtime" in probe
    assert "inspect" not in probe
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 120  # Celery's warm shutdown: running jobs finish


def deployment(case: str, component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in by_kind(case, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def test_only_the_image_repository_set_renders_a_web_release_on_the_app_version() -> None:
    kinds = sorted(b["kind"] for b in rendered("only-repository"))
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]  # fmt: skip  (the second Service, NetworkPolicy and the StatefulSet: the trial Redis)
    container = deployment("only-repository", "web")["spec"]["template"]["spec"]["containers"][0]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/acme/shop:{app_version}"
    assert "command" not in container  # the image's CMD (zephyr docker init wrote the app in it)


def test_a_digest_pins_the_image() -> None:
    container = deployment("digest", "web")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/shop@sha256:" + "ab" * 32


def test_secrets_are_mounted_files_read_through_secrets_dir_never_environment() -> None:
    for case in ("existing-secret", "everything", "flower-own-secret"):
        for body in rendered(case):
            if body["kind"] == "ConfigMap":
                assert "@" not in json.dumps(body["data"])
            if (
                body["kind"] not in WORKLOADS
                or body["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
            ):
                continue
            pod = body["spec"]["template"]["spec"]
            (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
            assert volume["projected"]["defaultMode"] == 0o440
            for container in pod["containers"]:
                assert "secretKeyRef" not in json.dumps(container)
                assert "secretRef" not in json.dumps(container.get("envFrom", []))
                env = {e["name"]: e["value"] for e in container["env"]}
                (mount,) = [m for m in container["volumeMounts"] if m["name"] == "secrets"]
                assert env["ZEPHYR_SECRETS_DIR"] == mount["mountPath"] and mount["readOnly"]
    flower = deployment("flower-own-secret", "flower")["spec"]["template"]["spec"]
    (volume,) = [v for v in flower["volumes"] if v["name"] == "secrets"]
    (source,) = volume["projected"]["sources"]
    assert source["secret"] == {
        "name": "flower-login",
        "items": [{"key": "auth", "path": "FLOWER_BASIC_AUTH"}],
    }


def test_a_config_change_rolls_the_pods_and_a_replica_change_does_not() -> None:
    first = deployment("existing-secret", "web")["spec"]["template"]["metadata"]["annotations"]
    changed = render(
        {**MATRIX["existing-secret"], "settings": {"CACHE_KEY_PREFIX": "other"}},
        release=RELEASE,
        namespace=NAMESPACE,
    )
    (web,) = [m.body for m in changed if m.kind == "Deployment" and m.name == "shop-zephyr-app"]
    second = web["spec"]["template"]["metadata"]["annotations"]
    assert first["checksum/config"] != second["checksum/config"]
    scaled = render(
        {**MATRIX["existing-secret"], "replicaCount": 7}, release=RELEASE, namespace=NAMESPACE
    )
    (web,) = [m.body for m in scaled if m.kind == "Deployment" and m.name == "shop-zephyr-app"]
    assert web["spec"]["template"]["metadata"]["annotations"] == first  # no restart to scale


def test_network_policies_open_the_web_port_flower_to_the_namespace_and_nothing_else() -> None:
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]
        for p in by_kind("everything", "NetworkPolicy")
    }
    assert set(policies) == {"web", "worker", "beat", "flower", "redis"}
    assert policies["web"]["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    assert policies["flower"]["ingress"][0]["from"] == [{"podSelector": {}}]
    for closed in ("worker", "beat"):
        assert policies[closed]["policyTypes"] == ["Ingress"] and "ingress" not in policies[closed]
    assert by_kind("no-network-policy", "NetworkPolicy") == []


def test_flower_has_a_cluster_ip_service_and_no_ingress_unless_asked() -> None:
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind("flower", "Service")}
    assert services["shop-zephyr-app-flower"]["type"] == "ClusterIP"
    for ingress in by_kind("everything", "Ingress"):
        backends = json.dumps(ingress["spec"])
        assert "flower" not in backends
    (asked,) = [
        i for i in by_kind("flower-ingress", "Ingress") if "flower" in i["metadata"]["name"]
    ]
    assert asked["spec"]["rules"][0]["host"] == "flower.example.com"
    (policy,) = [
        p
        for p in by_kind("flower-ingress", "NetworkPolicy")
        if p["metadata"]["name"].endswith("-flower")
    ]
    assert "from" not in policy["spec"]["ingress"][0]  # the controller is in another namespace


def test_keda_scales_workers_on_every_priority_list_of_each_queue() -> None:
    (scaled,) = by_kind("keda", "ScaledObject")
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]]
    assert lists == [
        "celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169",
        "mail", "mail\x06\x163", "mail\x06\x166", "mail\x06\x169",
    ]  # fmt: skip
    assert {t["metadata"]["address"] for t in scaled["spec"]["triggers"]} == {"redis.prod.svc:6379"}
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == "shop-zephyr-app-worker"
    (auth,) = by_kind("keda", "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "shop-env", "key": "REDIS_PASSWORD"}
    ]
    worker = deployment("keda", "worker")
    assert "replicas" not in worker["spec"]  # KEDA's HPA owns the count


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_bad_values_are_refused_naming_the_value(name: str) -> None:
    values, words = BAD_VALUES[name]
    with pytest.raises(ConfigError) as caught:
        render({**values}, release=RELEASE, namespace=NAMESPACE)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_the_schema_rejects_unknown_keys_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    walk(schema, "")


def test_notes_say_how_to_reach_the_app_and_flower() -> None:
    notes = render_text(MATRIX["flower"], release=RELEASE, namespace=NAMESPACE)[
        "zephyr-app/templates/NOTES.txt"
    ]
    assert "port-forward service/shop-zephyr-app 8000:80" in notes
    assert "port-forward service/shop-zephyr-app-flower 5555:5555" in notes


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_kind_and_name_read_from_the_text_match_the_parsed_object(case: str) -> None:
    """generate reads them without parsing the YAML: they must agree with a parse."""
    manifests = render(MATRIX[case], release=RELEASE, namespace=NAMESPACE)
    assert len(manifests) == len([b for b in rendered(case) if b["kind"] != "Pod"])
    for manifest in manifests:
        kind, name = manifest._kind, manifest._name  # read from the text, not parsed
        assert (kind, name) == (manifest.body["kind"], manifest.body["metadata"]["name"])
