"""DNS discovery: a name's A and AAAA records, re-resolved every ``interval`` seconds.

A Kubernetes headless Service and Compose's service names both answer with one
record per instance. dnspython's async resolver asks the system's nameservers
(``/etc/resolv.conf``) unless ``nameservers`` are given; the event loop never blocks
on it. A name with no records (NXDOMAIN, or no answer of either family) means no
instances; a resolver that does not answer keeps the last list and logs one warning.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import dns.asyncresolver
import dns.exception
import dns.resolver

from zephyr_core import ConfigError
from zephyr_resilience._discovery import Update
from zephyr_resilience._endpoints import EndpointSpec

logger = logging.getLogger("zephyr_resilience.discovery")


class DnsDiscovery:
    """The instances of ``service``: one endpoint per A/AAAA record of ``host``.

    Args:
        service: The service name balancers ask for.
        host: The DNS name to resolve (``inventory.shop.svc.cluster.local``, ``inventory``).
        port: The port every instance listens on.
        scheme: ``http`` or ``https``.
        interval: Seconds between resolutions.
        nameservers: Nameserver addresses (default: the system's).
        nameserver_port: Their port.
        path: A path prefix every request gets (``/api``).
    """

    def __init__(
        self,
        service: str,
        host: str,
        port: int,
        *,
        scheme: str = "http",
        interval: float = 30.0,
        nameservers: list[str] | None = None,
        nameserver_port: int = 53,
        path: str = "",
    ) -> None:
        if not isinstance(host, str) or not host or "/" in host:
            raise ConfigError(f"host={host!r}: expected a DNS name", field="host")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"port={port!r}: expected 1 to 65535", field="port")
        if scheme not in ("http", "https"):
            raise ConfigError(f"scheme={scheme!r}: expected http or https", field="scheme")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ConfigError(f"interval={interval!r}: expected a number of seconds > 0")
        self.service = service
        self.host = host
        self.port = port
        self.scheme = scheme
        self.interval = float(interval)
        self.path = path.rstrip("/")
        self.resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers is not None:
            self.resolver.nameservers = list(nameservers)
            self.resolver.port = nameserver_port
        self.resolver.lifetime = min(5.0, self.interval)

    async def _family(self, kind: str) -> list[str]:
        try:
            answer = await self.resolver.resolve(self.host, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [record.to_text() for record in answer]

    async def resolve(self) -> list[EndpointSpec]:
        """The endpoints the records name now."""
        found = await asyncio.gather(self._family("A"), self._family("AAAA"))
        specs = []
        for address in sorted(set(found[0] + found[1])):
            literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
            specs.append(EndpointSpec(f"{self.scheme}://{literal}:{self.port}{self.path}"))
        return specs

    async def watch(self, update: Update) -> None:
        last: list[EndpointSpec] | None = None
        warned = False
        while True:
            try:
                specs = await self.resolve()
            except dns.exception.DNSException as exc:
                if not warned:
                    warned = True
                    logger.warning(
                        "service %r: cannot resolve %s (%s); keeping %d endpoints",
                        self.service,
                        self.host,
                        exc,
                        len(last or []),
                    )
            else:
                warned = False
                if specs != last:
                    last = specs
                    update(specs)
            await asyncio.sleep(self.interval)
