"""Prometheus metrics of breakers and balancers, on the default registry ``/metrics`` serves."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

#: 0 closed, 1 open, 2 half-open.
BREAKER_STATE = Gauge(
    "zephyr_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open",
    ["name"],
)
BREAKER_CALLS = Counter(
    "zephyr_circuit_breaker_calls",
    "Calls through a circuit breaker by outcome (success, failure, ignored, rejected)",
    ["name", "outcome"],
)
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
