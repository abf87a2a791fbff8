"""JSON by default, msgpack optional, pickle only when signed."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zephyr_cache import configure, get_cache
from zephyr_cache._serializers import (
    BadSignature,
    JsonSerializer,
    MsgpackSerializer,
    SignedPickleSerializer,
)
from zephyr_core import ConfigError

KEY = b"0123456789abcdef-signing"


@pytest.mark.parametrize(
    "serializer", [JsonSerializer(), MsgpackSerializer(), SignedPickleSerializer(KEY)]
)
@pytest.mark.parametrize("value", [0, -12, 10**20, 1.5, "text", None, True, [1, "a"], {"k": [1]}])
def test_round_trip(serializer: JsonSerializer, value: object) -> None:
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "serializer", [JsonSerializer(), MsgpackSerializer(), SignedPickleSerializer(KEY)]
)
def test_integers_are_decimal_text(serializer: JsonSerializer) -> None:
    # so Redis INCRBY works on what set() wrote, whatever the serializer
    assert serializer.dumps(42) == b"42"
    assert serializer.loads(b"-7") == -7


def test_pickle_keeps_python_types() -> None:
    serializer = SignedPickleSerializer(KEY)
    assert serializer.loads(serializer.dumps((1, {2}))) == (1, {2})


def test_tampered_pickle_is_never_unpickled() -> None:
    serializer = SignedPickleSerializer(KEY)
    payload = serializer.dumps({"a": 1})
    other = SignedPickleSerializer(b"another-key-of-16-bytes")
    with pytest.raises(BadSignature):
        other.loads(payload)
    with pytest.raises(BadSignature):
        serializer.loads(payload[:-1] + b"x")


def test_unsigned_pickle_is_refused() -> None:
    with pytest.raises(ConfigError, match="signing_key"):
        configure({"default": {"backend": "memory", "serializer": "pickle"}})
    with pytest.raises(ConfigError, match="16 bytes"):
        configure({"default": {"backend": "memory", "serializer": "pickle", "signing_key": "x"}})


@pytest.mark.parametrize("name", ["msgpack", "pickle"])
async def test_redis_cache_with_other_serializers(name: str, redis_url: str) -> None:
    configure(
        {"default": {"backend": "redis", "url": redis_url, "serializer": name, "signing_key": KEY}}
    )
    cache = get_cache()
    await cache.set("k", {"a": [1, 2]})
    assert await cache.get("k") == {"a": [1, 2]}
    assert await cache.incr("n", 2) == 2
    assert await cache.get("n") == 2


async def test_forged_entry_in_redis_is_a_miss_not_code(redis_url: str) -> None:
    configure(
        {
            "default": {
                "backend": "redis",
                "url": redis_url,
                "serializer": "pickle",
                "signing_key": KEY,
            }
        }
    )
    cache = get_cache()
    forged = b"P" + b"\x00" * 32 + b"cos\nsystem\n(S'echo pwned'\ntR."
    client = redis.Redis.from_url(redis_url)
    client.set(cache.full_key("k"), forged)
    client.close()
    assert await cache.get("k", "miss") == "miss"
    assert cache.stats()["errors"] == 1 or cache.stats()["tiers"]["default"]["errors"] == 1


class Level(enum.IntEnum):
    LOW = 45  # msgpack packs 45 as b"-"
    MID = 50  # ... and 48-57 as the digits b"0".."9"
    HIGH = 1000


class Colour(enum.StrEnum):
    RED = "red"
    DIGITS = "42"


class Shape(enum.Enum):
    SQUARE = 4


def _plain(value: Any) -> Any:
    """What JSON and msgpack give back: enum members as their values, tuples as lists."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _same(got: Any, expected: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(got) is not type(expected):
        return False
    if isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(map(_same, got, expected))
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in got)
    return bool(got == expected)


# msgpack packs integers in nested values natively (64 bits); top-level ones are text.
_NESTED_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(Level)
    | st.sampled_from(Colour)
)


def _values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    nested = st.recursive(
        scalars | _NESTED_INT,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    # Scalars on their own too: the top level is where integers are decimal text.
    return scalars | st.integers() | nested


@settings(max_examples=300)
@given(_values(_SCALARS))
def test_json_round_trip(value: Any) -> None:
    serializer = JsonSerializer()
    assert _same(serializer.loads(serializer.dumps(value)), _plain(value))


@settings(max_examples=300)
@given(_values(_SCALARS | st.binary()))
@example(Level.MID)
def test_msgpack_round_trip(value: Any) -> None:
    serializer = MsgpackSerializer()
    assert _same(serializer.loads(serializer.dumps(value)), _plain(value))


@settings(max_examples=300)
@given(_values(_SCALARS | st.binary() | st.sampled_from(Shape)))
def test_signed_pickle_round_trip(value: Any) -> None:
    serializer = SignedPickleSerializer(KEY)
    assert _same(serializer.loads(serializer.dumps(value)), value)


@pytest.mark.parametrize("member", list(Level))
@pytest.mark.parametrize("name", ["json", "msgpack"])
async def test_int_enum_reads_back_as_its_value(
    name: str, member: Level, backend: str, request: pytest.FixtureRequest
) -> None:
    # msgpack gave 2 for Level.MID: its one-byte encoding b"2" was read as decimal text.
    where: dict[str, Any] = {"backend": "memory"}
    if backend == "redis":
        where = {"backend": "redis", "url": request.getfixturevalue("redis_url")}
    configure({"default": {**where, "serializer": name}})
    cache = get_cache()
    await cache.set("level", member)
    got = await cache.get("level")
    assert type(got) is int and got == member.value
    assert await cache.incr("level") == member.value + 1


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()])
def test_plain_enum_is_refused_by_json_and_msgpack(serializer: JsonSerializer) -> None:
    with pytest.raises(TypeError):
        serializer.dumps(Shape.SQUARE)
