"""Stock levels from the inventory service, through a LoadBalancer with a CircuitBreaker.

``app.include_router(router)`` adds ``GET /products/{product_id}/stock``. The inventory
service's endpoints come from the SERVICE_REGISTRY setting (``make demo`` sets it and
``zephyr up`` starts the service), else ``http://127.0.0.1:8001``. When every inventory
endpoint is down, or its breaker is open, the answer is a 503 that says so, at once.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter, HTTPException

from zephyr_core import get_settings
from zephyr_resilience import (
    CircuitBreaker,
    CircuitBreakerError,
    HealthCheck,
    LoadBalancer,
)

router = APIRouter()

_balancer: list[LoadBalancer] = []


def inventory() -> LoadBalancer:
    """The shop's balancer for the inventory service, made on first use."""
    if not _balancer:
        registry = get_settings().SERVICE_REGISTRY
        endpoints = registry.get("inventory") or ["http://127.0.0.1:8001"]
        _balancer.append(
            LoadBalancer(
                services={"inventory": endpoints},
                strategy="p2c",
                health_check=HealthCheck(endpoint="/health/live", interval=10, timeout=2),
                timeout=2.0,
                breaker=CircuitBreaker(failure_threshold=5, recovery_timeout=30, name="shop"),
            )
        )
    return _balancer[0]


async def close_inventory() -> None:
    """Close the balancer's connections (at the app's shutdown)."""
    if _balancer:
        await _balancer.pop().aclose()


@router.get("/products/{product_id}/stock")
async def product_stock(product_id: int) -> dict[str, object]:
    try:
        async with inventory().client("inventory") as client:
            response = await client.get(f"/stock/{product_id}")
    except CircuitBreakerError as exc:
        raise HTTPException(status_code=503, detail=f"inventory unavailable: {exc}") from None
    except httpx.TransportError as exc:  # NoHealthyEndpoint included
        raise HTTPException(status_code=503, detail=f"inventory unreachable: {exc}") from None
    if response.status_code == 404:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    response.raise_for_status()
    return dict(response.json())
