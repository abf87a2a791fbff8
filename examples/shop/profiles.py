"""Customer profiles, cached per customer with a CacheGroup and invalidated on update.

``app.include_router(router)`` adds ``GET /profiles/{customer_id}`` (cached for five
minutes in the "default" cache: Redis at CACHE_URL unless the app calls
``zephyr_cache.configure``) and ``PUT /profiles/{customer_id}``, which updates the
profile and drops every cached entry for that customer, in every process. Customers
live in examples/shop/customers.py: PostgreSQL through a zephyr_db cluster when
DATABASE_URL is set, a dict otherwise.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from examples.shop.customers import CUSTOMERS as CUSTOMERS  # the stand-in store
from examples.shop.customers import get_customer, update_customer
from zephyr_cache import CacheGroup

router = APIRouter(prefix="/profiles", tags=["profiles"])

profile_cache = CacheGroup("profile")

# LOADS counts how often the store is really read.
LOADS = {"count": 0}


class ProfileUpdate(BaseModel):
    name: str
    city: str


@profile_cache.cached(timeout=300)
async def load_profile(customer_id: int) -> dict[str, object] | None:
    """Read a customer's profile (the slow part the cache saves)."""
    LOADS["count"] += 1
    return await get_customer(customer_id)


@router.get("/{customer_id}")
async def get_profile(customer_id: int) -> dict[str, object]:
    profile = await load_profile(customer_id)
    if profile is None:
        raise HTTPException(status_code=404, detail=f"no customer {customer_id}")
    return profile


@router.put("/{customer_id}")
async def update_profile(customer_id: int, update: ProfileUpdate) -> dict[str, object]:
    customer = await update_customer(customer_id, update.name, update.city)
    if customer is None:
        raise HTTPException(status_code=404, detail=f"no customer {customer_id}")
    await profile_cache.invalidate(customer_id)  # every process drops it
    # Cache the new profile from here: this task just wrote, so it reads the primary
    # (a replica may not have the update yet, and a stale read would stay cached).
    await load_profile.warm_cache(customer_id)
    return customer
