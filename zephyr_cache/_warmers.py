"""Cache warmers: named functions that fill caches ahead of traffic.

Register with ``@cache.warmer("name")`` (async or sync, no arguments); run with
``await cache.warm("name")`` or ``zephyr cache warm name``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from zephyr_cache._exceptions import CacheError

WarmerFn = Callable[[], Awaitable[Any]] | Callable[[], Any]
W = TypeVar("W", bound=Callable[[], Any])

_warmers: dict[str, Callable[[], Any]] = {}


def warmer(name: str) -> Callable[[W], W]:
    """Register the decorated no-argument function as the warmer ``name``.

    Raises:
        ValueError: the name is empty, or already taken by another function.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"warmer name={name!r}: expected a non-empty string")

    def register(fn: W) -> W:
        required = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            raise TypeError(
                f"warmer {name!r}: {fn.__qualname__} must take no arguments "
                f"(it requires {', '.join(p.name for p in required)})"
            )
        existing = _warmers.get(name)
        if existing is not None and _identity(existing) != _identity(fn):
            raise ValueError(
                f"warmer {name!r} is already registered by {_identity(existing)}; "
                f"cannot register {_identity(fn)}"
            )
        _warmers[name] = fn
        return fn

    return register


def _identity(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def warmers() -> list[str]:
    """The registered warmer names, sorted."""
    return sorted(_warmers)


async def warm(name: str | None = None) -> list[str]:
    """Run the warmer ``name``, or every warmer when ``name`` is None.

    Returns:
        The names of the warmers that ran.

    Raises:
        CacheError: no warmer has that name (the message lists the known ones), or a
            warmer raised: the message names it and its error, which is the
            ``__cause__``; the warmers after it do not run.
    """
    if name is None:
        names = warmers()
    elif name in _warmers:
        names = [name]
    else:
        known = ", ".join(warmers()) or "none registered"
        raise CacheError(f"no cache warmer named {name!r} (known: {known})")
    for each in names:
        fn = _warmers[each]
        try:
            if inspect.iscoroutinefunction(fn):
                await fn()
            else:
                await asyncio.to_thread(fn)  # a sync warmer may call sync cached functions
        except Exception as exc:
            raise CacheError(
                f"cache warmer {each!r} ({_identity(fn)}) failed: {type(exc).__name__}: {exc}"
            ) from exc
    return names
