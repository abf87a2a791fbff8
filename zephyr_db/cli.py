"""``zephyr db status [--json]``: each host of DATABASE_URL and DATABASE_READ_URLS.

For each server: its role (primary, replica; what PostgreSQL itself reports), whether
it answers, replication lag, and connection use: the server's connections to this
database against ``max_connections``, not counting this command's own (its pool would say
nothing about the app's). Exits 1 when the primary does not answer. Passwords are never printed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from zephyr_core import get_settings
from zephyr_db._cluster import DatabaseCluster
from zephyr_db._hosts import Host

_NAME = "zephyr db status"
_CONNECTIONS = """
SELECT count(*) FILTER (WHERE datname = current_database() AND application_name <> $1) AS used,
       current_setting('max_connections')::int AS max
FROM pg_catalog.pg_stat_activity
"""


async def _connections(host: Host) -> dict[str, int] | None:
    if not host.up:
        return None
    try:
        async with host.pool.acquire() as conn:
            row = await conn.fetchrow(_CONNECTIONS, _NAME)
    except Exception:  # it went down since the check: shown as down next time
        return None
    return {"used": row["used"], "max": row["max"]}


async def _status(timeout: float) -> list[dict[str, Any]]:
    cluster = DatabaseCluster.from_settings(
        pool_config={
            "min_size": 1,
            "max_size": 1,
            "timeout": timeout,
            "server_settings": {"application_name": _NAME},  # not counted as the app's
        },
        health_timeout=timeout,
        name="zephyr-db-status",
    )
    try:
        await cluster.check_health()
        hosts = [cluster.primary, *cluster.replicas]
        connections = await asyncio.gather(*(_connections(h) for h in hosts))
    finally:
        await cluster.close()
    report = []
    for host, used in zip(hosts, connections, strict=True):
        entry = host.status().as_dict()
        del entry["pool"], entry["reads"], entry["usable"]  # this process's, not the app's
        if host.in_recovery is not None:
            entry["server_role"] = "standby" if host.in_recovery else "primary"
        entry["connections"] = used
        report.append(entry)
    return report


@click.group(name="db")
def db() -> None:
    """PostgreSQL primary and replicas (DATABASE_URL, DATABASE_READ_URLS)."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each server.")  # fmt: skip
def status(as_json: bool, timeout: float) -> None:
    """Each host: its role, whether it answers, lag and connection use."""
    if not get_settings().DATABASE_URL:
        raise click.UsageError("DATABASE_URL is not set (postgresql://user:password@host/db)")
    report = asyncio.run(_status(timeout))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _table(report)
    if not report[0]["up"]:
        raise SystemExit(1)


def _table(report: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("host", "role", "server", "state", "lag", "connections")
    for entry in report:
        state = "up" if entry["up"] else f"down: {entry['error']}"
        lag = entry["lag_seconds"]
        used = entry["connections"]
        table.add_row(
            entry["host"],
            entry["role"],
            entry.get("server_role", "-"),
            state,
            "-" if lag is None else f"{lag:.2f}s",
            "-" if used is None else f"{used['used']}/{used['max']}",
        )
    Console(width=160).print(table)
