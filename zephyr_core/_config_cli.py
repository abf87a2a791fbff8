"""``zephyr config show|check``: effective settings, masked, and their validation."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from zephyr_core._exceptions import ConfigError
from zephyr_core._settings import Settings, redis_urls_by_setting


@click.group()
def config() -> None:
    """Show or check the effective settings (environment and .env)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(as_json: bool) -> None:
    """Print every effective setting, passwords masked, then what each Redis URL is."""
    settings = Settings()
    values = settings.display()
    topologies = redis_topologies(settings)
    if as_json:
        click.echo(json.dumps({**values, "redis_topologies": topologies}, indent=2))
        return
    width = max(map(len, values))
    for name, value in values.items():
        click.echo(f"{name:<{width}}  {value}")
    click.echo("\nRedis (what each URL is):")
    for name, topology in topologies.items():
        nodes = ", ".join(topology["nodes"])
        click.echo(
            f"  {name:<{width - 2}}  {topology['describe']}" + (f": {nodes}" if nodes else "")
        )


def redis_topologies(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per Redis URL setting in use: its kind, a one-line description and its nodes."""
    shown: dict[str, dict[str, Any]] = {}
    for name, url in redis_urls_by_setting(settings).items():
        topology = settings.redis_topology(url)
        shown[name] = {
            "kind": topology.kind,
            "describe": topology.describe(),
            "nodes": [f"{host}:{port}" for host, port in topology.nodes],
            "master_name": topology.master_name,
            "db": topology.db,
            "tls": topology.tls,
        }
    return shown


@config.command()
def check() -> None:
    """Validate the settings: exit 0 when valid, 1 naming each bad field otherwise."""
    try:
        Settings()
    except ConfigError as exc:
        for line in exc.problems:
            click.secho(f"invalid: {line}", fg="red", err=True)
        sys.exit(1)
    click.echo("settings are valid")
