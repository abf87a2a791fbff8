"""Kubernetes discovery: a Service's EndpointSlices, listed then watched.

The ``kubernetes`` client lists the slices labelled
``kubernetes.io/service-name=<name>`` and watches them from the list's
resourceVersion; every ADDED, MODIFIED or DELETED event recomputes the endpoint list
(one per address of each endpoint not marked ``ready: false``, on the named port or
the slice's first). The client is synchronous (urllib3), so it runs on a daemon
thread and hands each list to the event loop; the loop never waits on the API server.
A watch that ends or fails is re-listed after a second (one warning while it fails).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from zephyr_core import ConfigError
from zephyr_resilience._discovery import Update
from zephyr_resilience._endpoints import EndpointSpec

logger = logging.getLogger("zephyr_resilience.discovery")


def endpoints_of(slices: list[Any], port_name: str | None, scheme: str) -> list[EndpointSpec]:
    """The endpoints EndpointSlice objects name (ready or of unknown readiness)."""
    urls: set[str] = set()
    for item in slices:
        ports = item.ports or []
        port = next((p for p in ports if port_name is None or p.name == port_name), None)
        if port is None or port.port is None:
            continue
        for endpoint in item.endpoints or []:
            conditions = endpoint.conditions
            if conditions is not None and conditions.ready is False:
                continue
            for address in endpoint.addresses or []:
                host = f"[{address}]" if ":" in address else address
                urls.add(f"{scheme}://{host}:{port.port}")
    return [EndpointSpec(url) for url in sorted(urls)]


class KubernetesDiscovery:
    """The ready endpoints of a Kubernetes Service, from its EndpointSlices.

    Args:
        service: The service name balancers ask for.
        name: The Kubernetes Service's name (default: ``service``).
        namespace: Its namespace.
        port_name: The port to use, by name (default: each slice's first port).
        scheme: ``http`` or ``https``.
        api_client: A ``kubernetes.client.ApiClient`` (default: the in-cluster
            configuration, else ``~/.kube/config``).
        read_timeout: Seconds a watch waits for an event before it re-lists.
    """

    def __init__(
        self,
        service: str,
        *,
        name: str | None = None,
        namespace: str = "default",
        port_name: str | None = None,
        scheme: str = "http",
        api_client: Any = None,
        read_timeout: float = 30.0,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ConfigError(f"scheme={scheme!r}: expected http or https", field="scheme")
        if not isinstance(namespace, str) or not namespace:
            raise ConfigError(f"namespace={namespace!r}: expected a namespace name")
        self.service = service
        self.name = name or service
        self.namespace = namespace
        self.port_name = port_name
        self.scheme = scheme
        self.read_timeout = read_timeout
        self._api_client = api_client

    def _api(self) -> Any:
        from kubernetes import client
        from kubernetes import config as kube_config

        config: Any = kube_config  # partly typed: its loaders are not
        api_client = self._api_client
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                # The client reads KUBECONFIG once, when first imported: pass it now.
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
            api_client = client.ApiClient()
        return client.DiscoveryV1Api(api_client)

    async def watch(self, update: Update) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def push(specs: list[EndpointSpec]) -> None:
            if not stop.is_set():
                loop.call_soon_threadsafe(update, specs)

        thread = threading.Thread(
            target=self._follow, args=(push, stop), name=f"k8s-discovery:{self.name}", daemon=True
        )
        thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled with the balancer
        finally:
            stop.set()

    def _follow(self, push: Callable[[list[EndpointSpec]], None], stop: threading.Event) -> None:
        from kubernetes import watch as kube_watch

        watch: Any = kube_watch  # partly typed: Watch is not
        selector = f"kubernetes.io/service-name={self.name}"
        last: list[EndpointSpec] | None = None
        warned = False

        def emit(slices: dict[str, Any]) -> None:
            nonlocal last
            specs = endpoints_of(list(slices.values()), self.port_name, self.scheme)
            if specs != last:
                last = specs
                push(specs)

        while not stop.is_set():
            try:
                api = self._api()
                listing = api.list_namespaced_endpoint_slice(
                    self.namespace, label_selector=selector, _request_timeout=self.read_timeout
                )
                slices = {item.metadata.name: item for item in listing.items}
                emit(slices)
                warned = False
                watcher = watch.Watch()
                for event in watcher.stream(
                    api.list_namespaced_endpoint_slice,
                    self.namespace,
                    label_selector=selector,
                    resource_version=listing.metadata.resource_version,
                    _request_timeout=self.read_timeout,
                ):
                    if stop.is_set():
                        watcher.stop()
                        break
                    item = event["object"]
                    if event["type"] == "DELETED":
                        slices.pop(item.metadata.name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        slices[item.metadata.name] = item
                    emit(slices)
            except Exception as exc:  # the client raises urllib3, ApiException, OSError...
                if stop.is_set():
                    return
                if not warned:
                    warned = True
                    logger.warning(
                        "service %r: EndpointSlices of %s/%s unavailable (%s: %s); "
                        "keeping %d endpoints",
                        self.service,
                        self.namespace,
                        self.name,
                        type(exc).__name__,
                        exc,
                        len(last or []),
                    )
            stop.wait(1.0)
