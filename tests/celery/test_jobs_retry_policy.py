"""Retry delays: fixed, or doubling with jitter up to max_delay; the testing switch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zephyr_celery import testing
from zephyr_celery._task import RetryPolicy


@pytest.fixture(autouse=True)
def _testing_off() -> Iterator[None]:
    testing.set_testing(False)
    yield
    testing.set_testing(False)


@pytest.mark.parametrize("retries_done", [0, 1, 5])
def test_fixed_delay_without_backoff(retries_done: int) -> None:
    assert RetryPolicy(3, 60.0, False, 3600.0).countdown(retries_done) == 60.0


@given(
    delay=st.floats(min_value=0.1, max_value=600),
    max_delay=st.floats(min_value=600, max_value=7200),
    retries_done=st.integers(min_value=0, max_value=30),
)
def test_backoff_doubles_with_jitter_up_to_max_delay(
    delay: float, max_delay: float, retries_done: int
) -> None:
    ceiling = min(delay * 2**retries_done, max_delay)
    countdown = RetryPolicy(30, delay, True, max_delay).countdown(retries_done)
    assert ceiling / 2 <= countdown <= ceiling


def test_backoff_grows_on_average() -> None:
    policy = RetryPolicy(5, 10.0, True, 10_000.0)
    first = [policy.countdown(0) for _ in range(200)]
    third = [policy.countdown(2) for _ in range(200)]
    assert max(first) <= 10.0  # ceiling 10 s, at least half of it
    assert min(third) >= 20.0  # ceiling 40 s, at least half of it
    assert len(set(third)) > 1  # jitter: jobs that failed together spread out


def test_testing_switch_replaces_every_delay() -> None:
    policy = RetryPolicy(3, 60.0, True, 3600.0)
    testing.set_testing(True)
    assert testing.testing_enabled()
    assert policy.countdown(0) == policy.countdown(4) == 0.0
    testing.set_testing(True, retry_delay=0.5)
    assert policy.countdown(2) == 0.5
    testing.set_testing(False)
    assert not testing.testing_enabled()
    assert policy.countdown(0) >= 30.0


def test_testing_switch_refuses_negative_delay() -> None:
    with pytest.raises(ValueError, match="retry_delay=-1"):
        testing.set_testing(True, retry_delay=-1)
