"""One backend of a service: its URL, weight, pooled transport and what we measured.

Parsing and checking the service map lives here too, so a bad entry fails when the
balancer is built, naming the service and the entry, never deep inside httpx.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from zephyr_core import ConfigError

#: Latency assumed for an endpoint nothing was measured on yet, in seconds.
INITIAL_LATENCY = 0.001
#: Time constant of the latency EWMA, in seconds.
SMOOTHING_SECONDS = 1.0
#: The least weight one sample has, however close to the previous one it came.
MIN_SAMPLE_WEIGHT = 0.05
#: An endpoint nothing was measured on for this long counts as a third as slow (1/e),
#: so a slow one gets probed again once its figures are old.
DECAY_SECONDS = 30.0


@dataclass(frozen=True)
class EndpointSpec:
    """A parsed, checked service entry."""

    url: str
    weight: int = 1


@dataclass(eq=False)
class Endpoint:
    """Live state of one endpoint (mutated on the event loop only)."""

    url: str
    weight: int
    transport: httpx.AsyncBaseTransport
    scheme: str = ""
    host: str = ""
    port: int | None = None
    prefix: str = ""
    host_header: str = ""
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    healthy: bool = True  # the active check's verdict
    ejected_until: float = 0.0  # passive ejection, on the balancer's clock
    ejections: int = 0
    ewma: float = INITIAL_LATENCY
    ewma_at: float | None = None  # when last measured
    current_weight: int = 0  # smooth weighted round robin
    last_error: str | None = None
    extra: dict[Any, Any] = field(default_factory=dict)  # per-endpoint metric children

    def available(self, now: float) -> bool:
        return self.healthy and self.ejected_until <= now

    def observe(self, seconds: float, now: float) -> None:
        """Time-weighted EWMA: a sample weighs by the time since the previous one, so a
        busy endpoint's figure is smooth and a rarely used one's follows its latest."""
        w = 0.0 if self.ewma_at is None else math.exp(-(now - self.ewma_at) / SMOOTHING_SECONDS)
        w = min(w, 1.0 - MIN_SAMPLE_WEIGHT)  # answers arriving together still count
        self.ewma = self.ewma * w + seconds * (1.0 - w)
        self.ewma_at = now

    def latency(self, now: float) -> float:
        """The EWMA aged towards zero while nothing was measured, so a slow
        endpoint gets probed again once its last figures are old."""
        if self.ewma_at is None:
            return self.ewma
        return self.ewma * math.exp(-(now - self.ewma_at) / DECAY_SECONDS)


def parse_entry(service: str, entry: Any) -> EndpointSpec:
    """Check one entry of a service list: a URL string or ``{"url": ..., "weight": n}``."""
    where = f"service {service!r}"
    weight: Any = 1
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"url", "weight", "app"}  # "app": for `zephyr up` only
        if unknown or "url" not in entry:
            raise ConfigError(
                f"{where}: entry {dict(entry)!r}: expected keys 'url' and optional 'weight'",
                field="services",
            )
        url, weight = entry["url"], entry.get("weight", 1)
    else:
        url = entry
    if not isinstance(url, str):
        raise ConfigError(f"{where}: endpoint {url!r}: expected a URL string", field="services")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{where}: malformed URL {url!r}: {exc}", field="services") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{where}: malformed URL {url!r}: expected http(s)://host[:port][/prefix]",
            field="services",
        )
    if parsed.query or parsed.fragment:
        raise ConfigError(
            f"{where}: URL {url!r}: a query or fragment is not allowed", field="services"
        )
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ConfigError(
            f"{where}: URL {url!r}: weight={weight!r}: expected an integer >= 1",
            field="services",
        )
    return EndpointSpec(str(parsed).rstrip("/"), weight)


def parse_services(services: Any) -> dict[str, list[EndpointSpec]]:
    """Check a whole service map (``{"name": [url or {"url", "weight"}, ...]}``)."""
    if not isinstance(services, Mapping):
        raise ConfigError(
            f"services={services!r}: expected a mapping of service name to endpoint list",
            field="services",
        )
    parsed: dict[str, list[EndpointSpec]] = {}
    for name, entries in services.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"service name {name!r}: expected a non-empty string")
        if isinstance(entries, str | bytes) or not isinstance(entries, Sequence):
            raise ConfigError(
                f"service {name!r}: {entries!r}: expected a list of endpoints", field="services"
            )
        if not entries:
            raise ConfigError(f"service {name!r}: the endpoint list is empty", field="services")
        specs = [parse_entry(name, entry) for entry in entries]
        seen: set[str] = set()
        for spec in specs:
            if spec.url in seen:
                raise ConfigError(f"service {name!r}: {spec.url!r} is listed twice")
            seen.add(spec.url)
        parsed[name] = specs
    return parsed


def make_endpoint(spec: EndpointSpec, transport: httpx.AsyncBaseTransport) -> Endpoint:
    url = httpx.URL(spec.url)
    default_port = {"http": 80, "https": 443}[url.scheme]
    port = url.port
    host_header = url.host if port in (None, default_port) else f"{url.host}:{port}"
    if ":" in url.host:  # IPv6 literal
        host_header = f"[{url.host}]" + ("" if port in (None, default_port) else f":{port}")
    return Endpoint(
        url=spec.url,
        weight=spec.weight,
        transport=transport,
        scheme=url.scheme,
        host=url.host,
        port=port,
        prefix=url.path.rstrip("/"),
        host_header=host_header,
    )
