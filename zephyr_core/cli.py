"""The ``zephyr`` command: a click group whose subcommands come from entry points.

Each package contributes its group through the ``zephyr.commands`` entry-point group,
so ``zephyr_core`` imports none of them; a package whose extra is not installed has
no working subcommand and says which extra to install.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from zephyr_core import __version__
from zephyr_core._exceptions import ConfigError, ZephyrError

# Which extra brings each package's subcommand, for the "pip install" advice.
EXTRAS = {
    "jobs": "jobs",
    "cache": "cache",
    "docker": "docker",
    "k8s": "k8s",
    "deploy": "deploy",
    "db": "db",
}


def _commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group="zephyr.commands")}


def missing_extra_advice(name: str, missing: str) -> str:
    """What ``zephyr NAME`` says when ``missing`` (a module of its extra) is not installed."""
    extra = EXTRAS.get(name, name)
    # zephyr-infra is not on PyPI yet: the install is from a checkout (README, Install).
    return (
        f"'zephyr {name}' needs the {extra!r} extra ({missing} is not installed): "
        f"pip install -e '.[{extra}]' in a checkout of zephyr-infra"
    )


def require_modules(name: str, *modules: str) -> None:
    """Fail as a usage error naming the extra when a module ``zephyr NAME`` needs is missing.

    For subcommands whose extra's libraries are imported only by some of their commands.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise click.UsageError(missing_extra_advice(name, module))


class MissingExtra(click.Command):
    """Stands in for a subcommand whose extra is not installed, and says so."""

    def __init__(self, name: str, missing: str) -> None:
        self.advice = missing_extra_advice(name, missing)
        super().__init__(name, help=self.advice, callback=self._fail)

    def _fail(self) -> None:
        raise click.UsageError(self.advice)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self._fail()
        return args


class ZephyrGroup(click.Group):
    """Loads subcommands lazily from the ``zephyr.commands`` entry points."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry = _commands().get(cmd_name)
        return None if entry is None else load_command(entry)


def load_command(entry: EntryPoint) -> click.Command:
    """Load a subcommand, or a stand-in that names the extra to install."""
    try:
        loaded: click.Command = entry.load()
    except ImportError as exc:
        return MissingExtra(entry.name, exc.name or str(exc))
    return loaded


@click.group(cls=ZephyrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zephyr")
def zephyr() -> None:
    """Production infrastructure for ASGI apps: jobs, caches, health, deployment."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: no traceback reaches the user for errors we understand."""
    try:
        return zephyr.main(args=argv, prog_name="zephyr", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except ZephyrError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
