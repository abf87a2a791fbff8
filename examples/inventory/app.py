"""examples/inventory: the small second service the shop calls through its load balancer.

Run it with ``zephyr serve --app examples.inventory.app:app --port 8001`` (``zephyr up``
starts it when SERVICE_REGISTRY lists it with an ``app``, as ``make demo`` does).
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException

app = FastAPI(title="zephyr inventory example")

STOCK = {1: 12, 2: 0}


@app.get("/stock/{product_id}")
async def stock(product_id: int) -> dict[str, object]:
    """Units in stock of one product, and which instance answered."""
    if product_id not in STOCK:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    return {"product_id": product_id, "in_stock": STOCK[product_id], "instance": os.getpid()}
