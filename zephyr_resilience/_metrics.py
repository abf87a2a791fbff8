"""Prometheus metrics of breakers and balancers, on the default registry ``/metrics`` serves.

A breaker's call counts are plain integers on the breaker, read when ``/metrics`` is
scraped (a collector over the live breakers): a prometheus-client ``inc()`` takes a
lock, which would be a third of the breaker's cost per call.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

OUTCOMES = ("success", "failure", "ignored", "rejected")


class _Breakers(Collector):
    """State and calls by outcome of every live CircuitBreaker, summed by name."""

    def __init__(self) -> None:
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        calls = CounterMetricFamily(
            "zephyr_circuit_breaker_calls",
            "Calls through a circuit breaker by outcome (success, failure, ignored, rejected)",
            labels=["name", "outcome"],
        )
        state = GaugeMetricFamily(
            "zephyr_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            labels=["name"],
        )
        totals: dict[str, list[int]] = {}
        states: dict[str, int] = {}
        for breaker in list(self.live):
            counts = totals.setdefault(breaker.name, [0, 0, 0, 0])
            for index, value in enumerate(breaker.outcome_counts()):
                counts[index] += value
            states[breaker.name] = max(states.get(breaker.name, 0), STATE_VALUES[breaker.state])
        for name, counts in sorted(totals.items()):
            for outcome, value in zip(OUTCOMES, counts, strict=True):
                calls.add_metric([name, outcome], value)
            state.add_metric([name], states[name])
        yield calls
        yield state


BREAKERS = _Breakers()
REGISTRY.register(BREAKERS)
BREAKER_TRANSITIONS = Counter(
    "zephyr_circuit_breaker_transitions",
    "Circuit breaker state changes",
    ["name", "to"],
)
LB_REQUESTS = Counter(
    "zephyr_lb_requests",
    "Attempts sent by a load balancer by service, endpoint and outcome",
    ["service", "endpoint", "outcome"],
)
LB_RETRIES = Counter(
    "zephyr_lb_retries",
    "Retries by service and decision (sent, budget_exhausted)",
    ["service", "decision"],
)
LB_EJECTIONS = Counter(
    "zephyr_lb_ejections", "Passive ejections by service and endpoint", ["service", "endpoint"]
)
LB_HEALTHY = Gauge(
    "zephyr_lb_endpoint_available",
    "1 when an endpoint takes traffic (healthy and not ejected)",
    ["service", "endpoint"],
)

STATE_VALUES = {"closed": 0, "open": 1, "half-open": 2}
