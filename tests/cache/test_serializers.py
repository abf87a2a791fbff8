"""JSON by default, msgpack optional, pickle only when signed."""

from __future__ import annotations

import pytest
import redis

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
