"""Checking what users pass: PostgreSQL URLs (one host or libpq's list) and pool options.

Everything is checked at construction, so a typo fails when the app starts, naming the
key or URL (passwords masked) and what is accepted, rather than on the first query.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from zephyr_core import ConfigError, mask_url
from zephyr_core._urls import postgres_url_problem

#: asyncpg's own pool and connection options that ``pool_config`` may hold.
POOL_KEYS: dict[str, tuple[type, ...]] = {
    "min_size": (int,),
    "max_size": (int,),
    "max_queries": (int,),
    "max_inactive_connection_lifetime": (int, float),
    "timeout": (int, float),
    "command_timeout": (int, float),
    "server_settings": (dict,),
    "statement_cache_size": (int,),
    "max_cached_statement_lifetime": (int, float),
    "max_cacheable_statement_size": (int,),
    "setup": (object,),
    "init": (object,),
    "ssl": (object,),
}
_NON_NEGATIVE = (
    "min_size",
    "max_queries",
    "max_inactive_connection_lifetime",
    "statement_cache_size",
    "max_cached_statement_lifetime",
    "max_cacheable_statement_size",
)
_POSITIVE = ("max_size", "timeout", "command_timeout")
TARGET_SESSION_ATTRS = (
    "any", "primary", "standby", "prefer-standby", "read-write", "read-only",
)  # fmt: skip


def nearest(name: str, choices: list[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_pool_config(config: Mapping[str, Any], *, where: str = "pool_config") -> dict[str, Any]:
    """Validate ``config`` against asyncpg's options; return a plain dict copy.

    Raises:
        ConfigError: an unknown key (with the nearest valid one), a value of the wrong
            type or range, or ``min_size`` above ``max_size``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{where}={config!r}: expected a dict of asyncpg pool options", field=where
        )
    for key, value in config.items():
        if key not in POOL_KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r}{nearest(str(key), list(POOL_KEYS))}; "
                f"accepted: {', '.join(sorted(POOL_KEYS))}",
                field=f"{where}.{key}",
            )
        types = POOL_KEYS[key]
        wrong_type = isinstance(value, bool) or not isinstance(value, types)
        may_be_none = value is None and key in ("command_timeout", "max_queries")
        if types != (object,) and wrong_type and not may_be_none:
            expected = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"{where}.{key}={value!r}: expected {expected}", field=f"{where}.{key}"
            )
        if key in _NON_NEGATIVE and value is not None and value < 0:
            raise ConfigError(f"{where}.{key}={value!r}: must be 0 or more", field=f"{where}.{key}")
        if key in _POSITIVE and value is not None and value <= 0:
            raise ConfigError(
                f"{where}.{key}={value!r}: must be greater than 0", field=f"{where}.{key}"
            )
    config = dict(config)
    if "max_size" in config and "min_size" not in config:
        # asyncpg's min_size default (10) would refuse a smaller max_size given alone
        config["min_size"] = min(10, config["max_size"])
    min_size, max_size = config.get("min_size", 10), config.get("max_size", 10)
    if min_size > max_size:
        raise ConfigError(
            f"{where}: min_size={min_size} is above max_size={max_size} "
            "(asyncpg's default for either is 10)",
            field=f"{where}.min_size",
        )
    return config


def hosts(url: str) -> list[str]:
    """The ``host:port`` entries of a URL, several for libpq's multi-host syntax."""
    after_userinfo = url.partition("://")[2].rpartition("@")[2]
    netloc = after_userinfo.split("/", 1)[0].split("?", 1)[0]
    return [h if ":" in h else f"{h}:5432" for h in netloc.split(",") if h] or ["localhost:5432"]


def host_label(url: str) -> str:
    """How metrics, logs and ``zephyr db status`` name the server(s) behind ``url``."""
    return ",".join(hosts(url))


def check_url(url: object, *, field: str) -> str:
    """Validate a PostgreSQL URL (one host, or libpq's ``h1:p1,h2:p2`` list).

    Raises:
        ConfigError: naming ``field`` and the masked URL.
    """
    if not isinstance(url, str):
        raise ConfigError(
            f"{field}={url!r}: expected a PostgreSQL URL string like "
            "postgresql://user:password@host:5432/dbname",
            field=field,
        )
    problem = _url_problem(url)
    if problem:
        raise ConfigError(
            f"{field}={mask_url(url)!r}: not a PostgreSQL URL: {problem}", field=field
        )
    return url


def _url_problem(url: str) -> str | None:
    head, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    netloc_end = len(tail)
    for stop in "/?":
        if stop in tail:
            netloc_end = min(netloc_end, tail.index(stop))
    netloc, after = tail[:netloc_end], tail[netloc_end:]
    entries = netloc.split(",") if netloc else [""]
    for entry in entries:
        single = f"{head}{sep}{userinfo}{at}{entry}{after}"
        if problem := postgres_url_problem(single):
            return problem
    query = after.partition("?")[2]
    for key, value in parse_qsl(query):
        if key == "target_session_attrs" and value not in TARGET_SESSION_ATTRS:
            return (
                f"target_session_attrs={value!r}: expected one of {', '.join(TARGET_SESSION_ATTRS)}"
            )
    return None


def with_target_session_attrs(url: str, attrs: str) -> str:
    """``url`` with ``target_session_attrs`` added, unless it already names one."""
    if "target_session_attrs=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}target_session_attrs={attrs}"
