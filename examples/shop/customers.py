"""The shop's customers, stored through a zephyr_db cluster when DATABASE_URL is set.

With ``DATABASE_URL`` (and optionally ``DATABASE_READ_URLS``) the app's lifespan opens
a :class:`zephyr_db.DatabaseCluster`: lookups read a replica, updates write the primary,
and a task that just wrote reads the primary for a second after (read-your-writes), so
the profile it caches is the one it stored. Without it, a dict stands in, so the
quickstart runs with no database.
"""

from __future__ import annotations

from zephyr_core import get_settings
from zephyr_db import DatabaseCluster

#: The stand-in store (and the rows seeded into a fresh database).
CUSTOMERS: dict[int, dict[str, object]] = {
    1: {"id": 1, "name": "Ada", "city": "London"},
    2: {"id": 2, "name": "Grace", "city": "Arlington"},
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text NOT NULL, city text NOT NULL)
"""

cluster: DatabaseCluster | None = None


async def open_store() -> None:
    """Open the cluster when DATABASE_URL is set; create and seed the table."""
    global cluster
    if cluster is not None or not get_settings().DATABASE_URL:
        return
    opened = DatabaseCluster.from_settings(
        pool_config={"min_size": 1, "max_size": 10}, read_your_writes=1.0, name="shop"
    )
    await opened.open()
    async with opened.write() as conn:
        await conn.execute(SCHEMA)
        await conn.executemany(
            "INSERT INTO customers (id, name, city) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(c["id"], c["name"], c["city"]) for c in CUSTOMERS.values()],
        )
    cluster = opened


async def close_store() -> None:
    global cluster
    if cluster is not None:
        await cluster.close()
        cluster = None


async def get_customer(customer_id: int) -> dict[str, object] | None:
    """One customer, read from a replica (or the stand-in dict)."""
    if cluster is None:
        customer = CUSTOMERS.get(customer_id)
        return dict(customer) if customer else None
    async with cluster.read() as conn:
        row = await conn.fetchrow("SELECT id, name, city FROM customers WHERE id = $1", customer_id)
    return dict(row) if row else None


async def update_customer(customer_id: int, name: str, city: str) -> dict[str, object] | None:
    """Update a customer on the primary; ``None`` when there is no such customer."""
    if cluster is None:
        if customer_id not in CUSTOMERS:
            return None
        CUSTOMERS[customer_id] = {"id": customer_id, "name": name, "city": city}
        return dict(CUSTOMERS[customer_id])
    async with cluster.write() as conn:
        row = await conn.fetchrow(
            "UPDATE customers SET name = $2, city = $3 WHERE id = $1 RETURNING id, name, city",
            customer_id, name, city,
        )  # fmt: skip
    return dict(row) if row else None
