"""apply, status, logs and scale against a stand-in API server (no real one runs here).

The stand-in (tests/k8s/apiserver_standin.py) records every request; these tests
check what a real API server would receive: server-side apply bodies, content type,
``fieldManager=zephyr``, the order of applies, the scale subresource. The no-cluster
paths (no kubeconfig, a server that does not answer) are real.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.k8s.apiserver_standin import StandInApiServer
from tests.k8s.cli import Result, zephyr
from zephyr_deploy._k8s.order import APPLY_ORDER

ENV = {
    "ZEPHYR_APP": "shop.main:app",
    "ZEPHYR_JOBS": "shop.jobs",
    "CONTAINER_REGISTRY": "ghcr.io/acme",
    "CONTAINER_TAG": "2.4.1",
    "K8S_NAMESPACE": "prod",
    "K8S_REPLICAS": "2",
}
SETS = ("--set", "existingSecret=shop-env")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "2.4.1"\n')
    return root


@pytest.fixture
def server() -> Iterator[StandInApiServer]:
    with StandInApiServer() as standin:
        yield standin


def run(server: StandInApiServer, project: Path, *args: str, **env: str) -> Result:
    kubeconfig = server.kubeconfig(project.parent)
    environment = {**ENV, "KUBECONFIG": str(kubeconfig), "HOME": str(project.parent), **env}
    return zephyr("k8s", *args, cwd=project, env=environment, timeout=90)


def generated(project: Path, *args: str) -> list[str]:
    result = zephyr("k8s", "generate", *args, cwd=project, env=ENV)
    assert result.code == 0, result.err
    return [text for text in result.out.split("---\n") if text.strip()]


def test_apply_sends_server_side_apply_in_dependency_order_then_waits(
    server: StandInApiServer, project: Path
) -> None:
    result = run(server, project, "apply", *SETS, "--timeout", "60")
    assert result.code == 0, result.err
    assert "rolled out" in result.out
    applies = server.applies()
    expected = generated(project, *SETS)
    assert len(applies) == len(expected)
    for record, text in zip(applies, expected, strict=True):
        assert record.content_type == "application/apply-patch+yaml"
        assert record.query["fieldManager"] == ["zephyr"] and record.query["force"] == ["true"]
        assert "dryRun" not in record.query
        assert record.authorization == "Bearer standin-token"
        assert yaml.safe_load(record.body) == yaml.safe_load(text)  # Helm's text, as rendered
        body = yaml.safe_load(record.body)
        assert record.path.startswith("/api") and record.path.endswith(
            f"/namespaces/prod/{record.path.split('/')[-2]}/{body['metadata']['name']}"
        )
    kinds = [yaml.safe_load(r.body)["kind"] for r in applies]
    assert kinds == sorted(kinds, key=APPLY_ORDER.index)
    assert kinds[:2] == ["ServiceAccount", "ConfigMap"]
    assert kinds.index("Service") < kinds.index("Deployment") < kinds.index("PodDisruptionBudget")
    # The rollout wait polled each Deployment after the last apply, until it was done.
    last_apply = server.requests.index(applies[-1])
    polled = [r.path for r in server.requests[last_apply + 1 :] if r.method == "GET"]
    for name in ("shop-zephyr-app", "shop-zephyr-app-worker", "shop-zephyr-app-beat"):
        assert polled.count(f"/apis/apps/v1/namespaces/prod/deployments/{name}") >= 2


def test_apply_twice_changes_nothing(server: StandInApiServer, project: Path) -> None:
    assert run(server, project, "apply", *SETS).code == 0
    generations = {p: o["metadata"]["generation"] for p, o in server.objects.items()}
    again = run(server, project, "apply", *SETS)
    assert again.code == 0, again.err
    assert {p: o["metadata"]["generation"] for p, o in server.objects.items()} == generations


def test_server_dry_run_stores_nothing(server: StandInApiServer, project: Path) -> None:
    result = run(server, project, "apply", *SETS, "--dry-run", "server")
    assert result.code == 0, result.err
    assert server.applies() and all(r.query["dryRun"] == ["All"] for r in server.applies())
    assert server.objects == {}
    assert not [r for r in server.requests if r.method == "GET"]  # no rollout to wait for


def test_an_interrupted_apply_is_finished_by_running_it_again(
    server: StandInApiServer, project: Path
) -> None:
    server.fail_apply_of = "shop-zephyr-app-worker"
    failed = run(server, project, "apply", *SETS)
    assert failed.code == 1
    (line,) = [line for line in failed.err.splitlines() if line.startswith("error")]
    assert "Deployment/shop-zephyr-app-worker" in line and "422" in line
    status = run(server, project, "status", "--json", *())
    assert status.code == 1
    body = json.loads(status.out)
    assert body["missing"] == ["worker (Deployment/shop-zephyr-app-worker)"]
    server.fail_apply_of = None
    assert run(server, project, "apply", *SETS).code == 0
    assert json.loads(run(server, project, "status", "--json").out)["missing"] == []


def test_status_shows_each_component_its_autoscaler_and_warnings(
    server: StandInApiServer, project: Path
) -> None:
    assert run(server, project, "apply", *SETS, "--set", "autoscaling.enabled=true").code == 0
    hpa_path = "/apis/autoscaling/v2/namespaces/prod/horizontalpodautoscalers/shop-zephyr-app"
    server.objects[hpa_path]["status"] = {
        "currentReplicas": 3, "desiredReplicas": 4,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 91}}}
        ],
    }  # fmt: skip
    server.events.append({
        "type": "Warning", "reason": "BackOff", "lastTimestamp": "2026-12-02T03:00:00Z",
        "message": "Back-off restarting failed container beat",
        "involvedObject": {"kind": "Pod", "name": "shop-zephyr-app-beat-7d9-abcde"},
    })  # fmt: skip
    result = run(server, project, "status", "--json")
    assert result.code == 0, result.err
    components = {c["component"]: c for c in json.loads(result.out)["components"]}
    assert set(components) == {"web", "worker", "beat"}
    web = components["web"]
    assert web["image"] == "ghcr.io/acme/shop:2.4.1" and web["rollout"] == "complete"
    assert web["autoscaler"].startswith(
        "shop-zephyr-app: 3 -> 4 replicas (2..10); cpu 91%/70%, memory ?/80%"
    )
    assert components["beat"]["warnings"] == ["BackOff: Back-off restarting failed container beat"]
    table = run(server, project, "status")
    assert "warning (beat): BackOff" in table.out


def test_scale_uses_the_scale_subresource(server: StandInApiServer, project: Path) -> None:
    assert run(server, project, "apply", *SETS).code == 0
    result = run(server, project, "scale", "--replicas", "5", "--component", "worker")
    assert result.code == 0, result.err
    (patch,) = [r for r in server.requests if r.path.endswith("/scale")]
    assert patch.path == "/apis/apps/v1/namespaces/prod/deployments/shop-zephyr-app-worker/scale"
    assert patch.content_type == "application/merge-patch+json"
    assert json.loads(patch.body) == {"spec": {"replicas": 5}}


def test_scale_refuses_a_target_an_autoscaler_owns(server: StandInApiServer, project: Path) -> None:
    assert run(server, project, "apply", *SETS, "--set", "autoscaling.enabled=true").code == 0
    result = run(server, project, "scale", "--replicas", "5")
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert "HorizontalPodAutoscaler shop-zephyr-app (2..10 replicas)" in line
    assert not [r for r in server.requests if r.path.endswith("/scale")]


def test_logs_prefix_each_line_with_its_pod(server: StandInApiServer, project: Path) -> None:
    labels = {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "worker"}
    for pod in ("shop-zephyr-app-worker-1", "shop-zephyr-app-worker-2"):
        server.pods[pod] = {"metadata": {"name": pod, "labels": labels}}
        server.pod_logs[pod] = [f"{pod} ready", "job done"]
    result = run(server, project, "logs", "--component", "worker", "--since", "10m", "-f")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert sorted(lines) == sorted([
        "[shop-zephyr-app-worker-1] shop-zephyr-app-worker-1 ready",
        "[shop-zephyr-app-worker-1] job done",
        "[shop-zephyr-app-worker-2] shop-zephyr-app-worker-2 ready",
        "[shop-zephyr-app-worker-2] job done",
    ])  # fmt: skip
    logs = [r for r in server.requests if r.path.endswith("/log")]
    assert {r.query["sinceSeconds"][0] for r in logs} == {"600"}
    assert {r.query["follow"][0] for r in logs} == {"true"}
    assert {r.query["container"][0] for r in logs} == {"worker"}


def test_bad_values_fail_before_any_request(server: StandInApiServer, project: Path) -> None:
    result = run(server, project, "apply", "--set", "replicaCount=three")
    assert result.code == 2 and "replicaCount" in result.err
    bad_since = run(server, project, "logs", "--since", "ten minutes")
    assert bad_since.code == 2 and "--since" in bad_since.err
    assert server.requests == []


def test_no_kubeconfig_is_one_line_exit_1(project: Path) -> None:
    env = {**ENV, "HOME": str(project.parent), "KUBECONFIG": str(project.parent / "none")}
    for args in (("apply",), ("status",), ("logs",), ("scale", "--replicas", "2")):
        result = zephyr("k8s", *args, cwd=project, env=env)
        assert result.code == 1, (args, result.err)
        (line,) = result.err.splitlines()
        assert line.startswith("error: no Kubernetes cluster configured")


def test_an_unreachable_server_is_one_line_naming_context_and_server(project: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = project.parent / "kc"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod-eu",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "contexts": [{"name": "prod-eu", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))  # fmt: skip
    result = zephyr("k8s", "status", cwd=project, env={**ENV, "KUBECONFIG": str(kubeconfig)})
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert f"https://127.0.0.1:{port}" in line and "'prod-eu'" in line


def test_the_rollout_wait_gives_up_at_its_deadline_naming_what_is_not_ready(
    server: StandInApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected clock: the deadline passes after three polls, with no real sleeping."""
    from zephyr_deploy import DeployError
    from zephyr_deploy._helm import render
    from zephyr_deploy._k8s.apply import apply_all, wait_for_rollouts
    from zephyr_deploy._k8s.cluster import Cluster

    server.rollout_gets = 1_000  # never ready
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path)))
    cluster = Cluster.connect()
    assert (cluster.context, cluster.server) == ("standin", server.url)
    manifests = render({"image": {"repository": "r"}}, release="shop", namespace="prod")
    apply_all(cluster, manifests, "prod", dry_run=False, progress=lambda m: None)
    now = [0.0]
    seen: list[int] = []
    workloads = [m for m in manifests if m.kind == "Deployment"]
    with pytest.raises(DeployError) as caught:
        wait_for_rollouts(
            cluster, workloads, "prod", timeout=10, show=lambda r: seen.append(len(r)),
            clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), interval=4,
        )  # fmt: skip
    assert len(seen) == 4  # at 0, 4, 8 and 12 s
    assert "Deployment/shop-zephyr-app (0/3 ready)" in str(caught.value)


def test_kubeconfig_is_read_from_the_environment_of_the_call(
    server: StandInApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubernetes client freezes KUBECONFIG when first imported; we read it per call."""
    from kubernetes.config import kube_config

    from zephyr_deploy._k8s.cluster import Cluster

    # As if the client had been imported while KUBECONFIG named another file.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "gone"))
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path)))
    cluster = Cluster.connect()
    assert (cluster.context, cluster.server) == ("standin", server.url)
