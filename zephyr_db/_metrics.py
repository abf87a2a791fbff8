"""Prometheus metrics for every open cluster, read at scrape time.

A collector computes the gauges (pool size, in use, waiting, per host) and counters
(reads by host, fallbacks to the primary) from the clusters' own counters when
``/metrics`` is scraped, so the read and write paths only add to plain integers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zephyr_db._cluster import open_clusters


class ClusterCollector(Collector):
    """Yields ``zephyr_db_*`` metrics for each open :class:`DatabaseCluster`."""

    def collect(self) -> Iterator[Metric]:
        labels = ["cluster", "host", "role"]
        size = GaugeMetricFamily(
            "zephyr_db_pool_size", "Open connections in the pool", labels=labels
        )
        in_use = GaugeMetricFamily(
            "zephyr_db_pool_in_use", "Connections acquired and not released", labels=labels
        )
        waiting = GaugeMetricFamily(
            "zephyr_db_pool_waiting", "Tasks waiting for a connection", labels=labels
        )
        up = GaugeMetricFamily(
            "zephyr_db_host_usable", "1 when reads or writes are routed to the host", labels=labels
        )
        lag = GaugeMetricFamily(
            "zephyr_db_replica_lag_seconds", "Seconds a replica is behind", labels=labels
        )
        reads = CounterMetricFamily("zephyr_db_reads", "Reads routed to each host", labels=labels)
        fallbacks = CounterMetricFamily(
            "zephyr_db_read_fallbacks", "Reads sent to the primary: no usable replica",
            labels=["cluster"],
        )  # fmt: skip
        for cluster in list(open_clusters):
            for status in cluster.status():
                values = [cluster.name, status.name, status.role]
                size.add_metric(values, status.pool.size)
                in_use.add_metric(values, status.pool.in_use)
                waiting.add_metric(values, status.pool.waiting)
                up.add_metric(values, 1 if status.usable else 0)
                reads.add_metric(values, status.reads)
                if status.role == "replica" and status.lag is not None:
                    lag.add_metric(values, status.lag)
            fallbacks.add_metric([cluster.name], cluster.fallbacks)
        yield from (size, in_use, waiting, up, lag, reads, fallbacks)


_registered = False


def register() -> None:
    """Add the collector to prometheus_client's default registry (once per process)."""
    global _registered
    if not _registered:
        REGISTRY.register(ClusterCollector())
        _registered = True
