"""``zephyr k8s apply``: server-side apply of the rendered chart, then the rollout wait.

Each object is sent as Helm rendered it, in dependency order, with
``PATCH ...?fieldManager=zephyr&force=true`` and ``Content-Type:
application/apply-patch+yaml``: the API server merges it and records ``zephyr`` as
the owner of the fields it sets. Applying the same objects again changes nothing,
so an apply interrupted half way is finished by running it again. ``force`` takes
over fields another manager (a previous ``kubectl apply``) set on the same objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zephyr_deploy._exceptions import ClusterUnavailable, DeployError
from zephyr_deploy._helm import Manifest
from zephyr_deploy._k8s.cluster import Cluster, resource_path

FIELD_MANAGER = "zephyr"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


def apply_query(*, dry_run: bool) -> list[tuple[str, str]]:
    """The query of every apply request."""
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    if dry_run:
        query.append(("dryRun", "All"))
    return query


def apply_all(
    cluster: Cluster,
    manifests: list[Manifest],
    namespace: str,
    *,
    dry_run: bool,
    progress: Callable[[Manifest], None],
) -> list[dict[str, Any]]:
    """Apply ``manifests`` in the given order; the API server's answers.

    Raises:
        DeployError: an object was refused (the message names it); the ones before it
            are applied (run again once fixed).
    """
    applied = []
    for manifest in manifests:
        path = resource_path(manifest.kind, namespace, manifest.name)
        try:
            answer = cluster.request(
                "PATCH", path, query=apply_query(dry_run=dry_run),
                body=manifest.text, content_type=APPLY_CONTENT_TYPE,
            )  # fmt: skip
        except ClusterUnavailable:
            raise
        except DeployError as exc:
            raise DeployError(f"{manifest.kind}/{manifest.name}: {exc}") from None
        applied.append(answer)
        progress(manifest)
    return applied


@dataclass
class Rollout:
    """One Deployment's or StatefulSet's progress towards its desired state."""

    kind: str
    name: str
    desired: int
    updated: int
    ready: int
    observed: bool

    @property
    def done(self) -> bool:
        """The controller saw the new spec and every replica is updated and ready."""
        return self.observed and self.updated >= self.desired and self.ready >= self.desired


def rollout_of(body: dict[str, Any]) -> Rollout:
    """A workload's rollout state, read from its ``status``."""
    status = body.get("status") or {}
    desired = int(body.get("spec", {}).get("replicas", 1))
    generation = int(body.get("metadata", {}).get("generation", 0))
    return Rollout(
        kind=str(body.get("kind", "Deployment")),
        name=str(body["metadata"]["name"]),
        desired=desired,
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        observed=int(status.get("observedGeneration", 0)) >= generation,
    )


def wait_for_rollouts(
    cluster: Cluster,
    workloads: list[Manifest],
    namespace: str,
    *,
    timeout: float,
    show: Callable[[list[Rollout]], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 2.0,
) -> list[Rollout]:
    """Poll each workload until its rollout is done or ``timeout`` passes.

    Raises:
        DeployError: the timeout passed; the message names what is not ready.
    """
    deadline = clock() + timeout
    while True:
        rollouts = [
            rollout_of(cluster.request("GET", resource_path(w.kind, namespace, w.name)))
            for w in workloads
        ]
        show(rollouts)
        if all(r.done for r in rollouts):
            return rollouts
        if clock() >= deadline:
            pending = ", ".join(
                f"{r.kind}/{r.name} ({r.ready}/{r.desired} ready)" for r in rollouts if not r.done
            )
            raise DeployError(
                f"rollout not finished after {timeout:g} s: {pending}; "
                "see `zephyr k8s status` for warnings (apply again to resume)"
            )
        sleep(interval)
