"""configure(), Settings defaults, and bad configuration failing early and clearly."""

from __future__ import annotations

from typing import Any

import pytest

import zephyr_cache
from zephyr_cache import cache, configure, get_cache
from zephyr_core import ConfigError, get_settings

PROPOSAL = {
    "default": {"backend": "redis", "url": "redis://localhost:6379/0", "timeout": 300},
    "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
    "sessions": {"backend": "redis", "url": "redis://localhost:6379/1", "timeout": 3600},
}


def test_the_proposals_dict_works_as_written() -> None:
    configure(PROPOSAL)
    assert get_cache("default").config.backend == "redis"
    assert get_cache("local").config.max_size == 1000
    assert get_cache("sessions").timeout == 3600
    assert get_cache("local").timeout == 60


def test_tiered_cache_names_its_tiers() -> None:
    configure({**PROPOSAL, "hot": {"backend": "tiered", "tiers": ["local", "default"]}})
    hot = get_cache("hot")
    assert hot.config.tiers == ("local", "default")
    assert hot.config.describe()["tiers"] == ["local", "default"]


def test_settings_are_the_default_without_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_BACKEND", "memory")
    monkeypatch.setenv("CACHE_DEFAULT_TIMEOUT", "42")
    monkeypatch.setenv("CACHE_KEY_PREFIX", "shop")
    get_settings.cache_clear()
    default = get_cache()
    assert default.config.backend == "memory"
    assert default.timeout == 42
    assert default.full_key("k") == "shop:1:k"


def test_settings_redis_url_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_URL", "redis://cache-host:6380/3")
    get_settings.cache_clear()
    assert get_cache().config.url == "redis://cache-host:6380/3"


def test_default_proxy_resolves_after_configure() -> None:
    # Decorating before configure() must not pin the cache it will use.
    @cache.cached(timeout=10)
    async def f() -> int:
        return 1

    configure({"default": {"backend": "memory", "key_prefix": "late"}})
    assert cache.full_key("x") == "late:1:x"
    assert cache.name == "default"


async def test_configure_after_decoration_is_used_at_call_time() -> None:
    calls = []

    @cache.cached(timeout=10)
    async def f(x: int) -> int:
        calls.append(x)
        return x

    configure({"default": {"backend": "memory"}})
    assert await f(1) == 1 and await f(1) == 1
    assert calls == [1]
    assert await cache.get_entry(cache.full_key(f.cache_key(1))) == [1]


def test_missing_default_comes_from_settings() -> None:
    configure({"local": {"backend": "memory"}})
    assert get_cache().config.backend == get_settings().CACHE_BACKEND


def test_unknown_cache_name_is_a_config_error() -> None:
    configure({"default": {"backend": "memory"}})
    with pytest.raises(ConfigError, match=r"no cache named 'nope'.*configured: default"):
        get_cache("nope")


def test_version_and_prefix_form_the_key() -> None:
    configure({"default": {"backend": "memory", "key_prefix": "app", "version": 7}})
    assert get_cache().full_key("user:1") == "app:7:user:1"


@pytest.mark.parametrize(
    ("caches", "field", "message"),
    [
        ({"default": {"backend": "mongo"}}, "caches['default'].backend", "expected one of"),
        (
            {"default": {"backend": "memory", "max_size": 0}},
            "caches['default'].max_size",
            "positive",
        ),
        (
            {"default": {"backend": "memory", "timeout": -1}},
            "caches['default'].timeout",
            "negative",
        ),
        ({"default": {"backend": "redis", "url": "http://x"}}, "caches['default'].url", "scheme"),
        (
            {"default": {"backend": "redis", "url": "redis://h:99999/0"}},
            "caches['default'].url",
            "(?i)port",
        ),
        (
            {"default": {"backend": "redis", "url": "redis://h/abc"}},
            "caches['default'].url",
            "database",
        ),
        (
            {"hot": {"backend": "tiered", "tiers": ["local", "default"]}},
            "caches['hot'].tiers",
            "unknown cache 'local'",
        ),
        ({"hot": {"backend": "tiered", "tiers": []}}, "caches['hot'].tiers", "list of cache"),
        (
            {"default": {"backend": "memory", "maxsize": 5}},
            "caches['default'].maxsize",
            "not an option",
        ),
        (
            {"default": {"backend": "memory", "serializer": "yaml"}},
            "caches['default'].serializer",
            "json",
        ),
        (
            {"default": {"backend": "memory", "serializer": "pickle"}},
            "caches['default'].serializer",
            "signing_key",
        ),
        (
            {"default": {"backend": "redis", "operation_timeout": 0}},
            "caches['default'].operation_timeout",
            "positive",
        ),
        (
            {"default": {"backend": "memory", "version": "2"}},
            "caches['default'].version",
            "integer",
        ),
        ({"default": "memory"}, "caches['default']", "expected a dict"),
    ],
)
def test_bad_configuration_names_the_key(caches: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        configure(caches)
    assert raised.value.field == field
    assert str(raised.value).startswith(field)


def test_bad_configuration_leaves_the_previous_one_in_force() -> None:
    configure({"default": {"backend": "memory", "key_prefix": "kept"}})
    with pytest.raises(ConfigError):
        configure({"default": {"backend": "nope"}})
    assert get_cache().full_key("k") == "kept:1:k"


def test_url_password_is_masked_in_errors_and_repr() -> None:
    with pytest.raises(ConfigError) as raised:
        configure({"default": {"backend": "redis", "url": "redis://u:s3cret@h:99999/0"}})
    assert "s3cret" not in str(raised.value)
    configure({"default": {"backend": "redis", "url": "redis://u:s3cret@h:6379/0"}})
    assert "s3cret" not in repr(get_cache())


def test_a_tier_cannot_be_tiered_itself() -> None:
    with pytest.raises(ConfigError, match="itself tiered"):
        configure(
            {
                "local": {"backend": "memory"},
                "a": {"backend": "tiered", "tiers": ["local"]},
                "b": {"backend": "tiered", "tiers": ["a"]},
            }
        )


def test_reset_returns_to_settings() -> None:
    configure({"default": {"backend": "dummy"}})
    zephyr_cache.reset()
    assert get_cache().config.backend == get_settings().CACHE_BACKEND
