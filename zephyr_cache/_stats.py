"""Hit, miss and error counters per cache and tier, exported to Prometheus.

Counters are plain integers bumped on the hot path (a Prometheus ``Counter`` takes a
lock per increment); a collector registered once in prometheus_client's default
registry reads them when ``/metrics`` is scraped.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class TierStats:
    """Counters of one tier of one cache (or of a whole cache)."""

    __slots__ = ("errors", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @property
    def hit_ratio(self) -> float | None:
        """hits / (hits + misses), or None before any read."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        ratio = self.hit_ratio
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "hit_ratio": None if ratio is None else round(ratio, 4),
        }


class CacheStats:
    """A cache's overall counters and one :class:`TierStats` per tier."""

    def __init__(self, cache: str, tiers: list[str]) -> None:
        self.cache = cache
        self.total = TierStats()
        self.tiers = {tier: TierStats() for tier in tiers}

    def as_dict(self) -> dict[str, Any]:
        self.total.errors = sum(s.errors for s in self.tiers.values())
        return {**self.total.as_dict(), "tiers": {t: s.as_dict() for t, s in self.tiers.items()}}

    def reset(self) -> None:
        for stats in (self.total, *self.tiers.values()):
            stats.hits = stats.misses = stats.errors = 0


_live: weakref.WeakSet[CacheStats] = weakref.WeakSet()


def track(stats: CacheStats) -> CacheStats:
    """Export ``stats`` on /metrics while its cache lives."""
    _live.add(stats)
    return stats


class _Collector:
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "zephyr_cache_requests",
            "Cache reads by cache, tier and result (hit or miss)",
            labels=["cache", "tier", "result"],
        )
        errors = CounterMetricFamily(
            "zephyr_cache_errors", "Backend errors by cache and tier", labels=["cache", "tier"]
        )
        ratio = GaugeMetricFamily(
            "zephyr_cache_hit_ratio", "Hits / reads since start, per cache", labels=["cache"]
        )
        for stats in sorted(_live, key=lambda s: s.cache):
            stats.total.errors = sum(s.errors for s in stats.tiers.values())
            rows = [("all", stats.total), *stats.tiers.items()]
            for tier, counts in rows:
                requests.add_metric([stats.cache, tier, "hit"], counts.hits)
                requests.add_metric([stats.cache, tier, "miss"], counts.misses)
                errors.add_metric([stats.cache, tier], counts.errors)
            if stats.total.hit_ratio is not None:
                ratio.add_metric([stats.cache], stats.total.hit_ratio)
        yield requests
        yield errors
        yield ratio

    def describe(self) -> list[Metric]:
        return []  # names are fixed but labels are dynamic: collect lazily


_collector = _Collector()
REGISTRY.register(_collector)
