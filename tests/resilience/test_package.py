"""The public surface: a sorted __all__ matching the exports, docstrings, types shipped."""

from __future__ import annotations

import types
from pathlib import Path

import zephyr_resilience


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(zephyr_resilience).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert list(zephyr_resilience.__all__) == sorted(zephyr_resilience.__all__)
    assert set(zephyr_resilience.__all__) == public
    for name in zephyr_resilience.__all__:
        assert getattr(zephyr_resilience, name).__doc__, f"{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    assert (Path(zephyr_resilience.__file__).parent / "py.typed").exists()


def test_errors_are_zephyr_errors_and_engine_errors() -> None:
    import httpx
    import pybreaker

    from zephyr_core import ZephyrError

    assert issubclass(zephyr_resilience.CircuitBreakerError, ZephyrError)
    assert issubclass(zephyr_resilience.CircuitBreakerError, pybreaker.CircuitBreakerError)
    assert issubclass(zephyr_resilience.NoHealthyEndpoint, ZephyrError)
    assert issubclass(zephyr_resilience.NoHealthyEndpoint, httpx.TransportError)
