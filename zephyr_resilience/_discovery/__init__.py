"""Service discovery: sources that keep a balancer's endpoint lists current.

Each source names one service and runs as a task the balancer starts lazily (with its
health checks) and stops on close, calling ``update(specs)`` with the whole endpoint
list whenever it changes. A source that cannot reach its backend keeps the last list
and logs one warning.

=========================  ==========================================================
static (``services=``)     the dict given, or the ``SERVICE_REGISTRY`` setting
:class:`DnsDiscovery`      A/AAAA records re-resolved every ``interval`` (a Kubernetes
                           headless Service, Compose service names)
:class:`RedisDiscovery`    instances announced with :func:`register_instance` or
                           ``zephyr serve --register NAME``, with a TTL heartbeat
:class:`KubernetesDiscovery`  a Service's EndpointSlices, watched through the
                           ``kubernetes`` client
=========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from zephyr_resilience._endpoints import EndpointSpec

Update = Callable[[list[EndpointSpec]], None]


class Discovery(Protocol):
    """A source of one service's endpoints."""

    service: str

    async def watch(self, update: Update) -> None:
        """Run until cancelled, calling ``update`` with each new endpoint list."""
        ...
