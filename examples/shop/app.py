"""examples/shop: the quickstart's FastAPI app. Each zephyr package adds its part here.

Run it with ``make demo`` (``zephyr up --app examples.shop.app:app``) or
``zephyr serve --app examples.shop.app:app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from examples.shop.customers import close_store, open_store
from examples.shop.inventory import close_inventory
from examples.shop.inventory import router as inventory_router
from examples.shop.jobs import router as jobs_router
from examples.shop.profiles import router as profiles_router
from zephyr_cache import close_caches


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await open_store()  # the customers' database cluster, when DATABASE_URL is set
    try:
        yield
    finally:
        await close_store()
        await close_caches()  # flush the last cache counters to Redis
        await close_inventory()


app = FastAPI(title="zephyr shop example", lifespan=lifespan)
app.include_router(profiles_router)
app.include_router(jobs_router)
app.include_router(inventory_router)

PRODUCTS = {
    1: {"id": 1, "name": "kite", "price_cents": 2500},
    2: {"id": 2, "name": "windsock", "price_cents": 900},
}


@app.get("/")
async def index() -> dict[str, object]:
    return {"app": "shop", "try": ["/products", "/profiles/1", "/health/ready", "/metrics"]}


@app.get("/products")
async def list_products() -> list[dict[str, object]]:
    return list(PRODUCTS.values())


@app.get("/products/{product_id}")
async def get_product(product_id: int) -> dict[str, object]:
    if product_id not in PRODUCTS:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    return PRODUCTS[product_id]
