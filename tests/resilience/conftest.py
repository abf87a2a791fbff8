"""Balancer fixtures: real uvicorn backends in their own processes, free to kill or freeze."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.resilience.processes import Backend


@pytest.fixture(autouse=True)
def _no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SERVICE_REGISTRY", "LOAD_BALANCER_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def backends() -> Iterator[list[Backend]]:
    """Three healthy backends shared by a module's tests (never killed)."""
    started = [Backend() for _ in range(3)]
    for backend in started:
        backend.start()
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture
def own_backends() -> Iterator[list[Backend]]:
    """Three backends of this test's own, free to kill and freeze."""
    started = [Backend() for _ in range(3)]
    for backend in started:
        backend.start()
    yield started
    for backend in started:
        backend.stop()
