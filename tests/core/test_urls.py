"""URL masking and validation: pure functions, checked by table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zephyr_core import mask_url
from zephyr_core._urls import amqp_url_problem, is_loopback, redis_url_problem


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("amqp://guest:guest@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("postgresql://u:p@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("rediss://user:s3cr3t@cache.example.com/2", "rediss://user:***@cache.example.com/2"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@given(st.text(alphabet=st.characters(blacklist_characters="@/:#?[]"), min_size=4))
def test_mask_url_never_leaks_the_password(password: str) -> None:
    url = f"redis://user:{password}@host:6379/0"
    assert password not in mask_url(url).removeprefix("redis://user:")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://localhost:6379/0", True),
        ("rediss://h/1", True),
        ("unix:///run/redis.sock", True),
        ("redis://", False),
        ("redis://h:0/0", False),
        ("redis://h/x", False),
        ("memcached://h", False),
    ],
)
def test_redis_url_problem(url: str, ok: bool) -> None:
    assert (redis_url_problem(url) is None) is ok


def test_amqp_and_loopback() -> None:
    assert amqp_url_problem("amqp://guest:guest@localhost:5672//") is None
    assert amqp_url_problem("redis://x") is not None
    assert is_loopback("redis://127.0.0.1:1/0") and is_loopback("redis://localhost")
    assert not is_loopback("redis://redis.internal:6379/0")
