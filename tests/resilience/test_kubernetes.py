"""Kubernetes discovery through the real ``kubernetes`` client, against a stand-in API
server (none can run here): listed, then watched; changes are followed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.resilience.k8s_api_standin import K8sApiStandIn, endpoint_slice
from tests.resilience.processes import Backend
from zephyr_resilience import KubernetesDiscovery, LoadBalancer


@pytest.fixture
def api() -> Iterator[K8sApiStandIn]:
    standin = K8sApiStandIn()
    yield standin
    standin.close()


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.01)


async def test_endpoint_slices_are_listed_then_watched(
    api: K8sApiStandIn, backends: list[Backend]
) -> None:
    port = backends[0].port
    api.slices["inventory-a"] = endpoint_slice("inventory-a", "inventory", ["127.0.0.1"], port)
    configuration = client.Configuration()
    configuration.host = api.url
    source = KubernetesDiscovery(
        "inventory", namespace="shop", port_name="http", api_client=client.ApiClient(configuration)
    )
    lb = LoadBalancer(services={}, health_check=None, discovery=[source])

    def urls() -> list[str]:
        return [e["url"] for e in lb.status()["inventory"]]

    try:
        async with lb:
            await lb.start()
            await wait_for(lambda: urls() == [f"http://127.0.0.1:{port}"], 10, "the list")
            async with lb.client("inventory") as http:
                assert (await http.get("/who")).json()["port"] == port
            # the watch: a second slice, then a pod that is not ready, then a deletion
            await wait_for(lambda: any("watch" in q for _, q in api.requests), 10, "a watch")
            api.push("ADDED", endpoint_slice("inventory-b", "inventory", ["127.0.0.2"], port))
            await wait_for(lambda: len(urls()) == 2, 10, "an added slice")
            api.push(
                "MODIFIED",
                endpoint_slice("inventory-b", "inventory", ["127.0.0.2"], port, ready=False),
            )
            await wait_for(lambda: len(urls()) == 1, 10, "a pod no longer ready")
            api.push("DELETED", api.slices["inventory-a"])
            await wait_for(lambda: urls() == [], 10, "a deleted slice")
    finally:
        api.events.put(None)
    path, query = api.requests[0]
    assert path == "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
    assert query["labelSelector"] == ["kubernetes.io/service-name=inventory"]
    watch_query = next(q for _, q in api.requests if "watch" in q)
    assert watch_query["resourceVersion"] == ["100"]
