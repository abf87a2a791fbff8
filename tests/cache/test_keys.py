"""Keys: canonical, stable across processes, and clear about what cannot be a key."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cache.conftest import python
from zephyr_cache._keys import MAX_KEY_LENGTH, FunctionKey, encode


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class WithKey:
    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __cache_key__(self) -> int:
        return self.ident


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        ("1", "'1'"),
        (True, "True"),
        (None, "None"),
        (1.5, "1.5"),
        (b"ab", "b'ab'"),
        ((1, "a"), "(1,'a')"),
        ([1, 2], "[1,2]"),
        ({"b": 1, "a": 2}, "{'a':2,'b':1}"),
        ({3, 1, 2}, "{1,2,3}|"),
        (Color.RED, "tests.cache.test_keys.Color.RED"),
        (datetime.date(2024, 1, 2), "date(2024-01-02)"),
        (uuid.UUID(int=1), "UUID(00000000-0000-0000-0000-000000000001)"),
        (decimal.Decimal("1.10"), "Decimal(1.10)"),
        (Point(1, 2), "tests.cache.test_keys.Point(x=1,y=2)"),
        (WithKey(7), "tests.cache.test_keys.WithKey(7)"),
    ],
)
def test_encoding_table(value: object, expected: str) -> None:
    assert encode(value, "arg") == expected


def test_int_and_str_do_not_collide() -> None:
    assert encode(1, "a") != encode("1", "a")
    assert encode((1, 2), "a") != encode([1, 2], "a")


PLAIN = st.none() | st.integers() | st.text() | st.floats(allow_nan=False)


@given(st.recursive(PLAIN, lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=10))
def test_encoding_is_deterministic_and_distinguishes_values(value: object) -> None:
    assert encode(value, "a") == encode(value, "a")
    assert encode(value, "a") != encode([value], "a")


def test_unkeyable_argument_is_named() -> None:
    async def load(user_id: int, session: object) -> None: ...

    key = FunctionKey(load, None, None)
    with pytest.raises(TypeError, match=r"load: argument 'session' is a builtins.object"):
        key.build((1, object()), {})
    with pytest.raises(TypeError, match=r"argument 'session'\[1\]"):
        key.build((1, [1, object()]), {})


def test_positional_keyword_and_defaults_give_one_key() -> None:
    def f(a: int, b: int = 2, *, c: str = "x") -> None: ...

    key = FunctionKey(f, "p", None)
    assert key.build((1,), {}) == key.build((1, 2), {}) == key.build((), {"a": 1, "c": "x"})
    assert key.build((1,), {}) == "p:1,2,'x'"
    assert key.build((1, 3), {}) != key.build((1,), {})


def test_custom_key_callable() -> None:
    def f(user: object) -> None: ...

    key = FunctionKey(f, "user", lambda user: f"id={user.ident}")  # type: ignore[attr-defined]
    assert key.build((WithKey(3),), {}) == "user:id=3"


def test_long_keys_are_hashed() -> None:
    def f(text: str) -> None: ...

    built = FunctionKey(f, None, None).build(("x" * 1000,), {})
    assert len(built) <= MAX_KEY_LENGTH
    assert built != FunctionKey(f, None, None).build(("x" * 999,), {})


def test_keys_are_the_same_in_another_process() -> None:
    code = (
        "from tests.cache.test_keys import Point, Color, WithKey\n"
        "from zephyr_cache._keys import encode\n"
        "print(encode([Point(1, 2), Color.RED, WithKey(5), {'a': {1, 2}}, 1.5], 'a'))"
    )
    here = encode([Point(1, 2), Color.RED, WithKey(5), {"a": {1, 2}}, 1.5], "a")
    first, second = python(code), python(code)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == second.stdout.strip() == here
