"""``zephyr config show|check``: effective settings, masked, and their validation."""

from __future__ import annotations

import json
import sys

import click

from zephyr_core._exceptions import ConfigError
from zephyr_core._settings import Settings


@click.group()
def config() -> None:
    """Show or check the effective settings (environment and .env)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(as_json: bool) -> None:
    """Print every effective setting, passwords masked."""
    values = Settings().display()
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    width = max(map(len, values))
    for name, value in values.items():
        click.echo(f"{name:<{width}}  {value}")


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
