"""The public surface: a sorted __all__ matching the exports, types shipped."""

from __future__ import annotations

import types
from pathlib import Path

import zephyr_cache


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(zephyr_cache).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)  # cli
    }
    assert list(zephyr_cache.__all__) == sorted(zephyr_cache.__all__)
    assert set(zephyr_cache.__all__) == public
    for name in zephyr_cache.__all__:
        assert getattr(zephyr_cache, name).__doc__, f"{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    assert (Path(zephyr_cache.__file__).parent / "py.typed").exists()


def test_cli_is_a_click_group_named_cache() -> None:
    import click

    from zephyr_cache.cli import cache

    assert isinstance(cache, click.Group) and cache.name == "cache"
    assert set(cache.commands) == {"stats", "clear", "warm"}


def test_health_provider_is_importable() -> None:
    from zephyr_cache._health import checks

    assert callable(checks)
