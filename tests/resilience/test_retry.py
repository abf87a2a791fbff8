"""retry(): stamina's retries for async and sync callables; delays off in testing mode."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from zephyr_core import ConfigError
from zephyr_resilience import retry, testing


class Flaky(Exception):
    pass


@pytest.fixture
def testing_mode() -> Iterator[None]:
    testing.set_testing(True, attempts=10)
    yield
    testing.set_testing(False)


async def test_async_retries_until_success(testing_mode: None) -> None:
    calls = {"n": 0}

    @retry(on=Flaky, attempts=3, backoff=10)  # ten seconds: only testing mode makes it fast
    async def fetch() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise Flaky
        return "ok"

    started = time.perf_counter()
    assert await fetch() == "ok"
    assert calls["n"] == 3
    assert time.perf_counter() - started < 1
    assert testing.is_testing()


def test_sync_gives_up_after_attempts(testing_mode: None) -> None:
    calls = {"n": 0}

    @retry(on=Flaky, attempts=2)
    def fetch() -> None:
        calls["n"] += 1
        raise Flaky

    with pytest.raises(Flaky):
        fetch()
    assert calls["n"] == 2


def test_other_exceptions_and_predicates(testing_mode: None) -> None:
    calls = {"n": 0}

    @retry(on=lambda exc: isinstance(exc, Flaky) and "again" in str(exc), attempts=5)
    def fetch(message: str) -> None:
        calls["n"] += 1
        raise Flaky(message)

    with pytest.raises(Flaky):
        fetch("fatal")
    assert calls["n"] == 1
    with pytest.raises(Flaky):
        fetch("again")
    assert calls["n"] == 1 + 5


def test_real_backoff_waits_without_testing_mode() -> None:
    calls: list[float] = []

    @retry(on=Flaky, attempts=2, backoff=0.05, jitter=0)
    def fetch() -> None:
        calls.append(time.monotonic())
        raise Flaky

    with pytest.raises(Flaky):
        fetch()
    assert calls[1] - calls[0] >= 0.05


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"backoff": -1}, "backoff"),
        ({"max_delay": "1"}, "max_delay"),
        ({"jitter": -0.1}, "jitter"),
        ({"timeout": 0 - 1}, "timeout"),
        ({"on": "Flaky"}, "on"),
        ({"on": ()}, "on"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    options: dict[str, object] = {"on": Flaky, **kwargs}
    with pytest.raises(ConfigError, match=field):
        retry(**options)  # type: ignore[arg-type]
