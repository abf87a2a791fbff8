"""Customer profiles, cached per customer with a CacheGroup and invalidated on update.

``app.include_router(router)`` adds ``GET /profiles/{customer_id}`` (cached for five
minutes in the "default" cache: Redis at CACHE_URL unless the app calls
``zephyr_cache.configure``) and ``PUT /profiles/{customer_id}``, which updates the
profile and drops every cached entry for that customer, in every process.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from zephyr_cache import CacheGroup

router = APIRouter(prefix="/profiles", tags=["profiles"])

profile_cache = CacheGroup("profile")

# Stands in for the database; LOADS counts how often it is really read.
CUSTOMERS: dict[int, dict[str, object]] = {
    1: {"id": 1, "name": "Ada", "city": "London"},
    2: {"id": 2, "name": "Grace", "city": "Arlington"},
}
LOADS = {"count": 0}


class ProfileUpdate(BaseModel):
    name: str
    city: str


@profile_cache.cached(timeout=300)
async def load_profile(customer_id: int) -> dict[str, object] | None:
    """Read a customer's profile (the slow part the cache saves)."""
    LOADS["count"] += 1
    customer = CUSTOMERS.get(customer_id)
    return dict(customer) if customer else None


@router.get("/{customer_id}")
async def get_profile(customer_id: int) -> dict[str, object]:
    profile = await load_profile(customer_id)
    if profile is None:
        raise HTTPException(status_code=404, detail=f"no customer {customer_id}")
    return profile


@router.put("/{customer_id}")
async def update_profile(customer_id: int, update: ProfileUpdate) -> dict[str, object]:
    if customer_id not in CUSTOMERS:
        raise HTTPException(status_code=404, detail=f"no customer {customer_id}")
    CUSTOMERS[customer_id] = {"id": customer_id, **update.model_dump()}
    await profile_cache.invalidate(customer_id)  # every process drops it
    return CUSTOMERS[customer_id]
