"""The transport of ``lb.client(service)``: one request in, the balancer's choice out.

:class:`ServiceTransport` refuses absolute URLs, starts the balancer's background
tasks on first use, and wraps the balancer's send in the service's circuit breaker
(transport errors and 5xx answers count). :class:`TrackedStream` is the response body:
closing it ends the request's in-flight count, which ``least_connections`` and ``p2c``
read. The endpoints' connection pools belong to the balancer, so closing a client
leaves them open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from zephyr_core import ConfigError
from zephyr_resilience._endpoints import Endpoint

if TYPE_CHECKING:
    from zephyr_resilience._balancer import LoadBalancer, _Service

#: The host of every ``lb.client()``'s base URL; a request to any other host is refused.
PLACEHOLDER_HOST = "zephyr-lb.invalid"


class TrackedStream(httpx.AsyncByteStream):
    """The response body; closing it ends the request's in-flight count."""

    __slots__ = ("_endpoint", "_inner", "_open")

    def __init__(self, inner: Any, endpoint: Endpoint) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._endpoint.in_flight -= 1
        await self._inner.aclose()


class ServiceTransport(httpx.AsyncBaseTransport):
    """The transport of ``lb.client(service)``: balances each request over the service."""

    def __init__(self, balancer: LoadBalancer, service: _Service) -> None:
        self.balancer = balancer
        self.service = service

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != PLACEHOLDER_HOST:
            raise ConfigError(
                f"lb.client({self.service.name!r}) takes paths relative to the service, "
                f"like '/users/1'; got the absolute URL {str(request.url)!r}",
                field="url",
            )
        balancer = self.balancer
        if not balancer._started:
            balancer._start()
        breaker = self.service.breaker
        if breaker is None:
            return await balancer._send(self.service, request)
        trial = breaker._before_async()  # open: fail fast, no connection attempt
        try:
            response = await balancer._send(self.service, request)
        except Exception as exc:
            breaker._failure(exc, trial)
            raise
        except BaseException:
            if trial:
                breaker._release()
            raise
        if response.status_code >= 500:
            failure = httpx.HTTPStatusError(
                f"{self.service.name} answered {response.status_code}",
                request=request,
                response=response,
            )
            breaker._failure(failure, trial)
        else:
            breaker._success(trial)
        return response

    async def aclose(self) -> None:
        # The endpoints' pools belong to the balancer, shared by all its clients.
        return None
