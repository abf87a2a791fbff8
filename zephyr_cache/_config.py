"""Cache configuration: the ``configure()`` dict and Settings, validated into plain records.

Every problem raises :class:`zephyr_core.ConfigError` naming the cache and the option
(``caches['local'].max_size``), the value and what would be accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zephyr_core import ConfigError, Settings, mask_url
from zephyr_core._urls import redis_url_problem

BACKENDS = ("redis", "memory", "dummy", "tiered")
SERIALIZERS = ("json", "msgpack", "pickle")

_COMMON = ("backend", "timeout", "key_prefix", "version", "serializer", "signing_key")
OPTIONS: dict[str, tuple[str, ...]] = {
    "redis": (*_COMMON, "url", "operation_timeout", "fail_open", "cooldown", "max_connections"),
    "memory": (*_COMMON, "max_size"),
    "dummy": _COMMON,
    "tiered": (*_COMMON, "tiers"),
}

DEFAULT_MAX_SIZE = 10_000
DEFAULT_OPERATION_TIMEOUT = 0.1
DEFAULT_COOLDOWN = 1.0
DEFAULT_MAX_CONNECTIONS = 50  # per event loop; calls beyond it wait for a free one


@dataclass(frozen=True)
class CacheConfig:
    """One named cache, validated. ``timeout`` None means entries never expire."""

    name: str
    backend: str
    timeout: float | None
    key_prefix: str
    version: int
    serializer: str = "json"
    signing_key: bytes | None = None
    url: str | None = None
    max_size: int = DEFAULT_MAX_SIZE
    tiers: tuple[str, ...] = ()
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    fail_open: bool = True
    cooldown: float = DEFAULT_COOLDOWN
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def describe(self) -> dict[str, Any]:
        """The settings worth showing, with any password masked."""
        shown: dict[str, Any] = {"backend": self.backend, "timeout": self.timeout}
        if self.url:
            shown["url"] = mask_url(self.url)
        if self.backend == "memory":
            shown["max_size"] = self.max_size
        if self.tiers:
            shown["tiers"] = list(self.tiers)
        shown["key_prefix"] = f"{self.key_prefix}:{self.version}"
        return shown


def _fail(name: str, option: str, value: Any, reason: str) -> ConfigError:
    shown = "'***'" if option == "signing_key" else repr(value)
    if option == "url" and isinstance(value, str):
        shown = repr(mask_url(value))
    field = f"caches[{name!r}].{option}"
    return ConfigError(f"{field}={shown}: {reason}", field=field)


def parse_timeout(value: Any, *, what: str = "timeout") -> float | None:
    """Seconds until expiry: a non-negative number, or None; 0 and None mean never."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number of seconds or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return None if value == 0 else value


def _positive_number(name: str, option: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise _fail(name, option, value, "expected a positive number of seconds")
    return float(value)


def _one(name: str, raw: Mapping[str, Any], settings: Settings) -> CacheConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"caches[{name!r}]={raw!r}: expected a dict like {{'backend': 'memory'}}",
            field=f"caches[{name!r}]",
        )
    backend = raw.get("backend")
    if backend not in BACKENDS:
        raise _fail(name, "backend", backend, f"expected one of {', '.join(BACKENDS)}")
    unknown = sorted(set(raw) - set(OPTIONS[backend]))
    if unknown:
        raise _fail(
            name,
            unknown[0],
            raw[unknown[0]],
            f"not an option of a {backend} cache (accepted: {', '.join(OPTIONS[backend])})",
        )
    values: dict[str, Any] = {"name": name, "backend": backend}

    try:
        values["timeout"] = parse_timeout(raw.get("timeout", settings.CACHE_DEFAULT_TIMEOUT))
    except ValueError as exc:
        raise _fail(name, "timeout", raw.get("timeout"), str(exc)) from None

    prefix = raw.get("key_prefix", settings.CACHE_KEY_PREFIX)
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        raise _fail(name, "key_prefix", prefix, "expected a non-empty string without spaces")
    if ":" in prefix:
        # ':' ends the prefix in stored keys: clear() on "app" would delete "app:sub"'s.
        raise _fail(name, "key_prefix", prefix, "must not contain ':' (use '.' or '-')")
    values["key_prefix"] = prefix

    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _fail(name, "version", version, "expected a non-negative integer")
    values["version"] = version

    serializer = raw.get("serializer", "json")
    if serializer not in SERIALIZERS:
        raise _fail(name, "serializer", serializer, f"expected one of {', '.join(SERIALIZERS)}")
    values["serializer"] = serializer
    key = raw.get("signing_key")
    if key is not None:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes) or len(key) < 16:
            raise _fail(name, "signing_key", key, "expected a secret of at least 16 bytes")
        values["signing_key"] = key
    if serializer == "pickle" and key is None:
        raise _fail(
            name, "serializer", serializer, "pickle needs a signing_key (never unsigned pickle)"
        )

    if backend == "redis":
        url = raw.get("url", settings.CACHE_URL)
        problem = (
            redis_url_problem(url, allow_cluster=True)
            if isinstance(url, str)
            else "it is not a string"
        )
        if problem:
            raise _fail(name, "url", url, f"not a Redis URL: {problem}")
        try:
            settings.redis_topology(url)  # a Sentinel master name may come from Settings
        except ValueError as exc:
            raise _fail(name, "url", url, str(exc)) from None
        values["url"] = url
        for option, default in (
            ("operation_timeout", DEFAULT_OPERATION_TIMEOUT),
            ("cooldown", DEFAULT_COOLDOWN),
        ):
            values[option] = _positive_number(name, option, raw.get(option, default))
        fail_open = raw.get("fail_open", True)
        if not isinstance(fail_open, bool):
            raise _fail(name, "fail_open", fail_open, "expected True or False")
        values["fail_open"] = fail_open
        connections = raw.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise _fail(
                name,
                "max_connections",
                connections,
                "expected a positive integer (connections per event loop; calls beyond it wait)",
            )
        values["max_connections"] = connections
    elif backend == "memory":
        size = raw.get("max_size", DEFAULT_MAX_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise _fail(name, "max_size", size, "expected a positive integer (entries)")
        values["max_size"] = size
    elif backend == "tiered":
        tiers = raw.get("tiers")
        if (
            not isinstance(tiers, list | tuple)
            or not tiers
            or not all(isinstance(t, str) for t in tiers)
        ):
            raise _fail(name, "tiers", tiers, "expected a list of cache names, fastest first")
        if len(set(tiers)) != len(tiers):
            raise _fail(name, "tiers", tiers, "a cache may appear only once")
        values["tiers"] = tuple(tiers)
    return CacheConfig(**values)


def parse(raw: Mapping[str, Any], settings: Settings) -> dict[str, CacheConfig]:
    """Validate a ``configure()`` dict; "default" comes from Settings when absent."""
    if not isinstance(raw, Mapping) or not all(isinstance(name, str) for name in raw):
        raise ConfigError(
            f"caches={raw!r}: expected a dict of cache name to options", field="caches"
        )
    configs = {name: _one(name, options, settings) for name, options in raw.items()}
    if "default" not in configs:
        configs["default"] = from_settings(settings)["default"]
    for config in configs.values():
        for tier in config.tiers:
            if tier == config.name:
                raise _fail(config.name, "tiers", list(config.tiers), "a cache cannot tier itself")
            if tier not in configs:
                raise _fail(
                    config.name,
                    "tiers",
                    list(config.tiers),
                    f"names unknown cache {tier!r} (configured: {', '.join(sorted(configs))})",
                )
            if configs[tier].backend == "tiered":
                raise _fail(
                    config.name,
                    "tiers",
                    list(config.tiers),
                    f"{tier!r} is itself tiered; list its tiers instead",
                )
    return configs


def from_settings(settings: Settings) -> dict[str, CacheConfig]:
    """The default cache when ``configure()`` was not called: CACHE_* settings."""
    options: dict[str, Any] = {"backend": settings.CACHE_BACKEND}
    if settings.CACHE_BACKEND == "redis":
        options["url"] = settings.CACHE_URL
    return {"default": _one("default", options, settings)}
