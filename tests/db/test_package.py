"""The public surface: a sorted __all__ matching the exports, types shipped, CLI and health."""

from __future__ import annotations

import types
from pathlib import Path

import zephyr_db


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(zephyr_db).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert list(zephyr_db.__all__) == sorted(zephyr_db.__all__)
    assert set(zephyr_db.__all__) == public
    for name in zephyr_db.__all__:
        assert getattr(zephyr_db, name).__doc__, f"{name} has no docstring"


def test_errors_subclass_zephyr_error_and_the_builtin() -> None:
    from zephyr_core import ZephyrError

    assert issubclass(zephyr_db.DatabaseError, ZephyrError)
    assert issubclass(zephyr_db.DatabaseUnavailable, ConnectionError)
    assert issubclass(zephyr_db.NoHealthyReplica, zephyr_db.DatabaseUnavailable)


def test_py_typed_is_shipped() -> None:
    assert (Path(zephyr_db.__file__).parent / "py.typed").exists()


def test_cli_is_a_click_group_named_db() -> None:
    import click

    from zephyr_db.cli import db

    assert isinstance(db, click.Group) and db.name == "db"
    assert set(db.commands) == {"status"}


def test_entry_points_are_declared() -> None:
    from importlib.metadata import entry_points

    assert entry_points(group="zephyr.commands")["db"].load().name == "db"
    assert entry_points(group="zephyr.health")["db"].load().__module__ == "zephyr_db._health"
