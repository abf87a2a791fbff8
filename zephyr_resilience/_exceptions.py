"""The errors zephyr_resilience raises, each also the matching engine or built-in error.

- :class:`CircuitBreakerError` is pybreaker's ``CircuitBreakerError`` too, so code
  written against pybreaker keeps catching it.
- :class:`NoHealthyEndpoint` is an ``httpx.TransportError`` too, so a handler that
  already catches httpx's transport errors catches it.
"""

from __future__ import annotations

import httpx
import pybreaker

from zephyr_core import ZephyrError


class CircuitBreakerError(ZephyrError, pybreaker.CircuitBreakerError):
    """The breaker is open (or half-open with its trial calls taken): the call was not made.

    Attributes:
        name: The breaker's name.
        state: ``"open"`` or ``"half-open"``.
        retry_after: Seconds until an open breaker lets a trial call through (0 when
            half-open).
    """

    def __init__(self, name: str, state: str, retry_after: float) -> None:
        if state == "open":
            message = f"circuit breaker {name!r} is open: retry in {retry_after:.3g}s"
        else:
            message = f"circuit breaker {name!r} is half-open and its trial calls are taken"
        super().__init__(message)
        self.name, self.state, self.retry_after = name, state, retry_after


class NoHealthyEndpoint(ZephyrError, httpx.TransportError):
    """Every endpoint of a service is unhealthy, ejected, or already tried.

    Attributes:
        service: The service's name.
    """

    def __init__(self, service: str, detail: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(f"no healthy endpoint for service {service!r}: {detail}")
        self.service = service
        if request is not None:
            self.request = request
