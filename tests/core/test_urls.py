"""URL masking and validation: pure functions, checked by table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zephyr_core import mask_url
from zephyr_core._urls import (
    amqp_url_problem,
    is_loopback,
    postgres_url_problem,
    redis_url_problem,
)


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


# Characters that end a URL's authority early for a parser, or look like escapes.
TRICKY = ["#", "/", "?", "@", "%", "@/#?%"]


@pytest.mark.parametrize("char", TRICKY)
@pytest.mark.parametrize(
    ("template", "masked"),
    [
        ("postgresql://app:p{c}ssw0rd@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("redis://:p{c}ss@cache:6379/1", "redis://:***@cache:6379/1"),
        ("amqp://guest:12{c}34@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("redis://u:{c}x@[::1]:6379/0?ssl_cert_reqs=none", "redis://u:***@[::1]:6379/0?ssl_cert_reqs=none"),
    ],
)  # fmt: skip
def test_mask_url_masks_the_whole_password_whatever_it_holds(
    char: str, template: str, masked: str
) -> None:
    assert mask_url(template.format(c=char)) == masked


def test_mask_url_in_an_error_message() -> None:
    message = "Error 111 connecting to redis://u:p#w@h:1/0. Connection refused."
    assert mask_url(message) == "Error 111 connecting to redis://u:***@h:1/0. Connection refused."


@given(st.text(min_size=1))
def test_mask_url_never_leaks_the_password(password: str) -> None:
    url = f"redis://user:{password}@host:6379/0"
    assert mask_url(url) == "redis://user:***@host:6379/0"


@pytest.mark.parametrize("char", ["#", "/", "?"])
def test_a_password_a_parser_misreads_is_refused_without_quoting_it(char: str) -> None:
    for problem in (
        redis_url_problem(f"redis://u:4{char}secret@h:6379/0"),
        amqp_url_problem(f"amqp://u:4{char}secret@h:5672//"),
        postgres_url_problem(f"postgresql://u:4{char}secret@h:5432/db"),
        redis_url_problem(f"redis://u:pw{char}secret@h:6379/0"),
    ):
        assert problem is not None and "percent-encoded" in problem
        assert "secret" not in problem and "4" not in problem.split(";")[0]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("postgresql://app:pw@db:5432/app", True),
        ("postgres://db/app", True),
        ("postgresql:///app?host=/run/postgresql", True),
        ("http://x", False),
        ("postgresql://", False),
        ("[1", False),
        ("postgresql://db:port/app", False),
    ],
)
def test_postgres_url_problem(url: str, ok: bool) -> None:
    assert (postgres_url_problem(url) is None) is ok


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
