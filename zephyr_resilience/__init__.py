"""zephyr_resilience: circuit breakers, retries and client-side load balancing.

pybreaker trips, stamina (on tenacity) retries, httpx talks: a
:class:`CircuitBreaker` for async and sync callables on pybreaker's state machine,
:func:`retry` on stamina, and a :class:`LoadBalancer` that is an httpx transport, with
health checks, ejection, budgeted retries and service discovery.
"""

from zephyr_resilience._balancer import LoadBalancer
from zephyr_resilience._breaker import CircuitBreaker
from zephyr_resilience._budget import RetryBudget
from zephyr_resilience._discovery._dns import DnsDiscovery
from zephyr_resilience._discovery._kubernetes import KubernetesDiscovery
from zephyr_resilience._discovery._redis import RedisDiscovery, Registration, register_instance
from zephyr_resilience._exceptions import CircuitBreakerError, NoHealthyEndpoint
from zephyr_resilience._health import HealthCheck
from zephyr_resilience._retry import retry

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerError",
    "DnsDiscovery",
    "HealthCheck",
    "KubernetesDiscovery",
    "LoadBalancer",
    "NoHealthyEndpoint",
    "RedisDiscovery",
    "Registration",
    "RetryBudget",
    "register_instance",
    "retry",
]
