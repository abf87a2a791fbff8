"""``@cached``: cache a function's results, async or sync, with stampede protection.

Entries are stored as ``[value, early, tags]`` so a cached ``None`` is a hit:
``early`` is ``[compute_seconds, expires_at]`` for probabilistic early expiration
(XFetch: recompute with a probability that rises as expiry nears, weighted by how
long the value takes to compute) and ``tags`` the group tokens the value was computed
under (see ``_groups``).

Stampedes: concurrent misses of one key in a process wait for a single computation;
``lock=True`` extends that across processes with a lock in the shared tier (the
others poll for the value, then compute themselves if the lease runs out).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

from zephyr_cache._cache import DEFAULT, Cache, Timeout
from zephyr_cache._config import parse_timeout
from zephyr_cache._flights import single_flight
from zephyr_cache._keys import FunctionKey
from zephyr_cache._memory import MISSING
from zephyr_cache._registry import get_cache
from zephyr_cache._runner import runner
from zephyr_core import ConfigError

if TYPE_CHECKING:
    from zephyr_cache._groups import CacheGroup

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: How long a ``lock=True`` computation may hold the lock before others compute too.
LOCK_LEASE = 10.0
#: XFetch's beta: above 1 favours earlier recomputation.
EARLY_BETA = 1.0

# The wall clock (entries' expiry times are shared across processes; compute times
# are measured on it too) and the random source of early expiration: module-level so
# tests can replace them.
_clock: Callable[[], float] = time.time
_random: Callable[[], float] = random.random


class CachedOptions(TypedDict, total=False):
    """The options of :func:`cached`, ``Cache.cached``, ``cache.cached`` and
    ``CacheGroup.cached`` (all optional; ``timeout`` is their first argument).

    Attributes:
        key_prefix: Replaces ``module.qualname`` at the front of the key.
        cache_name: The named cache to use (default "default"); resolved at call
            time, so ``configure()`` may run after decoration.
        key: ``key(*args, **kwargs)`` returning a string (or plain values) used
            instead of the arguments.
        unless: ``unless(*args, **kwargs)``; when true the call bypasses the cache.
        lock: Across processes, only one computes a missing key; the others wait for
            its value (up to ``LOCK_LEASE`` seconds). While Redis is down the lock
            cannot be taken, so every process computes (each once: the in-process
            single flight still holds), rather than none of them.
        early: Recompute hot keys shortly before they expire (probabilistically).
    """

    key_prefix: str | None
    cache_name: str | None
    key: Callable[..., Any] | None
    unless: Callable[..., bool] | None
    lock: bool
    early: bool


class Decorator(Protocol):
    """What ``cached(...)`` returns: applied to an async or a sync function."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> SyncCachedFunction[P, R]: ...


class _Options:
    """Validated decorator options, shared by the async and sync wrappers."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        timeout: Timeout,
        key_prefix: str | None = None,
        cache_name: str | None = None,
        key: Callable[..., Any] | None = None,
        unless: Callable[..., bool] | None = None,
        lock: bool = False,
        early: bool = False,
        group: CacheGroup | None,
        by: str | None,
    ) -> None:
        where = f"@cached on {fn.__module__}.{fn.__qualname__}"
        if timeout is not DEFAULT:
            try:
                parse_timeout(timeout)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}", field="timeout") from None
        for name, value in (("key", key), ("unless", unless)):
            if value is not None and not callable(value):
                raise ConfigError(f"{where}: {name}={value!r} is not callable", field=name)
        if key_prefix is not None and (not isinstance(key_prefix, str) or not key_prefix):
            raise ConfigError(f"{where}: key_prefix={key_prefix!r}: expected a non-empty string")
        if cache_name is not None and not isinstance(cache_name, str):
            raise ConfigError(f"{where}: cache_name={cache_name!r}: expected a cache name")
        self.fn = fn
        self.timeout = timeout
        self.cache_name = cache_name or "default"
        self.key = FunctionKey(fn, key_prefix, key)
        self.unless = unless
        self.lock = bool(lock)
        self.early = bool(early)
        self.group = group
        self.by: str | None = None
        if group is not None:
            if by is None:
                if not self.key.names:
                    raise ConfigError(f"{where}: a group needs an argument to invalidate by")
                by = self.key.names[0]
            elif by not in self.key.names:
                raise ConfigError(
                    f"{where}: by={by!r} is not a parameter "
                    f"(parameters: {', '.join(self.key.names) or 'none'})",
                    field="by",
                )
            self.by = by
        elif by is not None:
            raise ConfigError(f"{where}: by= applies only to CacheGroup.cached")
        self.plain = group is None and not early


class _Cached:
    """The lookup/compute/store steps, as coroutines both wrappers run."""

    def __init__(self, options: _Options) -> None:
        self._o = options
        self.__wrapped__ = options.fn
        functools.update_wrapper(self, options.fn)  # type: ignore[arg-type]

    def _cache(self) -> Cache:
        return get_cache(self._o.cache_name)

    def _ttl(self, cache: Cache) -> float | None:
        timeout = self._o.timeout
        return cache.timeout if timeout is DEFAULT else parse_timeout(timeout)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The key this call's result is stored under (without the cache prefix)."""
        return self._o.key.build(args, kwargs)

    def _keys(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        keys = [cache.full_key(self._o.key.build(args, kwargs))]
        group = self._o.group
        if group is not None:
            assert self._o.by is not None
            value = self._o.key.argument(args, kwargs, self._o.by)
            keys += [cache.full_key(group.group_key()), cache.full_key(group.value_key(value))]
        return keys

    async def _lookup(self, cache: Cache, keys: list[str]) -> tuple[bool, Any]:
        """(True, value) on a valid hit, else (False, the group tokens read)."""
        if len(keys) == 1:
            entry = await cache.get_entry(keys[0])
            tokens: list[Any] = []
        else:
            entry, *tokens = await cache.get_entries(keys, counted=False)
            valid = (
                isinstance(entry, list)
                and len(entry) > 2
                and MISSING not in tokens
                and entry[2] == tokens
            )
            cache.count(valid)
            if not valid:
                return False, tokens  # invalidated since (or written under other tokens)
        if entry is MISSING or not isinstance(entry, list) or not entry:
            return False, tokens
        if self._o.early and len(entry) > 1 and entry[1]:
            spent, expires_at = entry[1]
            # XFetch: recompute early with a probability that grows near expiry.
            if _clock() - spent * EARLY_BETA * math.log(_random() or 1e-12) >= expires_at:
                return False, tokens
        return True, entry[0]

    async def _tokens(self, cache: Cache, keys: list[str], tokens: list[Any]) -> list[Any]:
        """Make sure the group's tokens exist (before computing: see ``_groups``)."""
        ready = []
        # A token may expire with the entries it tags: they then miss, which is safe.
        ttl = self._ttl(cache)
        for key, token in zip(keys[1:], tokens, strict=True):
            if token is MISSING:
                fresh = uuid.uuid4().hex[:16]
                if await cache.add_entry(key, fresh, ttl):
                    token = fresh
                else:
                    token = await cache.get_entry(key)
                    token = fresh if token is MISSING else token
            ready.append(token)
        return ready

    async def _save(
        self, cache: Cache, keys: list[str], value: Any, spent: float, tokens: list[Any]
    ) -> None:
        ttl = self._ttl(cache)
        early = [round(spent, 6), _clock() + ttl] if self._o.early and ttl else None
        entry = [value, early, tokens] if tokens else [value, early] if early else [value]
        try:
            await cache.set_entry(keys[0], entry, ttl)
        except TypeError as exc:
            raise TypeError(
                f"{self._o.key.qualname} returned a {type(value).__qualname__} that "
                f"cannot be cached: {exc}"
            ) from None

    async def _acquire(self, cache: Cache, keys: list[str]) -> str | None:
        """A lock token when this process should compute, None when another one is."""
        token = uuid.uuid4().hex
        if await cache.add_entry(keys[0] + ":lock", token, LOCK_LEASE):
            return token
        return None

    async def _wait_for_value(self, cache: Cache, keys: list[str]) -> tuple[bool, Any]:
        deadline = time.monotonic() + LOCK_LEASE
        pause = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
            hit, value = await self._lookup(cache, keys)
            if hit:
                return True, value
            if await cache.get_entry(keys[0] + ":lock") is MISSING:
                break  # the holder gave up without storing: compute ourselves
        return False, None

    async def _release(self, cache: Cache, keys: list[str], token: str) -> None:
        await cache.release_entry(keys[0] + ":lock", token)

    def _bypass(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        unless = self._o.unless
        return unless is not None and bool(unless(*args, **kwargs))


class AsyncCachedFunction(_Cached, Generic[P, R]):
    """An ``async def`` whose results are cached. Call it like the function.

    ``await f.invalidate(*args)`` drops the entry for those arguments;
    ``await f.warm_cache(*args)`` computes and stores it now.
    """

    def __init__(self, options: _Options) -> None:
        super().__init__(options)
        self._fn: Callable[..., Awaitable[R]] = options.fn
        self._flights: dict[str, asyncio.Future[Any]] = {}

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else functools.partial(self.__call__, instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        options = self._o
        if options.unless is not None and self._bypass(args, kwargs):
            return await self._fn(*args, **kwargs)
        cache = get_cache(options.cache_name)
        if options.plain:
            # The common case, inlined: one key, no group, no early expiration.
            key = cache.prefix + options.key.build(args, kwargs)
            entry = await cache.get_entry(key)
            if type(entry) is list and entry:
                return entry[0]  # type: ignore[no-any-return]
            keys: list[str] = [key]
            found: Any = []
        else:
            keys = self._keys(cache, args, kwargs)
            hit, found = await self._lookup(cache, keys)
            if hit:
                return found  # type: ignore[no-any-return]
        return await single_flight(
            self._flights, keys[0], lambda: self._compute(cache, keys, found, args, kwargs)
        )

    async def _compute(
        self,
        cache: Cache,
        keys: list[str],
        tokens: list[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        if tokens:
            tokens = await self._tokens(cache, keys, tokens)
        lock = None
        if self._o.lock:
            lock = await self._acquire(cache, keys)
            if lock is None:
                hit, value = await self._wait_for_value(cache, keys)
                if hit:
                    return value  # type: ignore[no-any-return]
        try:
            started = _clock()
            value = await self._fn(*args, **kwargs)
            await self._save(cache, keys, value, max(0.0, _clock() - started), tokens)
        finally:
            if lock is not None:
                await self._release(cache, keys, lock)
        return value

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result for these arguments; True when there was one."""
        cache = self._cache()
        return await cache.delete_entry(cache.full_key(self._o.key.build(args, kwargs)))

    async def warm_cache(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Compute the result for these arguments now and store it."""
        cache = self._cache()
        keys = self._keys(cache, args, kwargs)
        tokens: list[Any] = []
        if len(keys) > 1:
            tokens = await self._tokens(cache, keys, await cache.get_entries(keys[1:]))
        started = _clock()
        value = await self._fn(*args, **kwargs)
        await self._save(cache, keys, value, max(0.0, _clock() - started), tokens)
        return value


class SyncCachedFunction(_Cached, Generic[P, R]):
    """A plain function whose results are cached; cache I/O runs on a background loop.

    ``f.invalidate(*args)`` and ``f.warm_cache(*args)`` are plain calls here.
    """

    def __init__(self, options: _Options) -> None:
        super().__init__(options)
        self._fn: Callable[..., R] = options.fn
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else functools.partial(self.__call__, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._o.unless is not None and self._bypass(args, kwargs):
            return self._fn(*args, **kwargs)
        cache = self._cache()
        run = _runner_for(cache)
        keys = self._keys(cache, args, kwargs)
        hit, found = run(self._lookup(cache, keys))
        if hit:
            return found  # type: ignore[no-any-return]
        with self._flights_lock:
            flight = self._flights.get(keys[0])
            leader = flight is None
            if flight is None:
                flight = self._flights[keys[0]] = _Flight()
            else:
                flight.waiters += 1
        if not leader:
            flight.done.wait()
            if flight.ok:
                return flight.value  # type: ignore[no-any-return]
            return self._fn(*args, **kwargs)  # the leader failed: try on our own
        try:
            value = self._compute(run, cache, keys, found, args, kwargs)
            flight.value, flight.ok = value, True
        finally:
            with self._flights_lock:
                del self._flights[keys[0]]
            flight.done.set()
        return value

    def _compute(
        self,
        run: Callable[[Coroutine[Any, Any, Any]], Any],
        cache: Cache,
        keys: list[str],
        tokens: list[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        if tokens:
            tokens = run(self._tokens(cache, keys, tokens))
        lock = None
        # A memory cache is per process: the single flight above is already the lock.
        if self._o.lock and cache._memory is None:
            lock = run(self._acquire(cache, keys))
            if lock is None:
                hit, value = run(self._wait_for_value(cache, keys))
                if hit:
                    return value  # type: ignore[no-any-return]
        try:
            started = _clock()
            value = self._fn(*args, **kwargs)
            run(self._save(cache, keys, value, max(0.0, _clock() - started), tokens))
        finally:
            if lock is not None:
                run(self._release(cache, keys, lock))
        return value

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result for these arguments; True when there was one."""
        cache = self._cache()
        key = cache.full_key(self._o.key.build(args, kwargs))
        deleted: bool = _runner_for(cache)(cache.delete_entry(key))
        return deleted

    def warm_cache(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Compute the result for these arguments now and store it."""
        cache = self._cache()
        run = _runner_for(cache)
        keys = self._keys(cache, args, kwargs)
        tokens: list[Any] = []
        if len(keys) > 1:
            tokens = run(self._tokens(cache, keys, run(cache.get_entries(keys[1:]))))
        started = _clock()
        value = self._fn(*args, **kwargs)
        run(self._save(cache, keys, value, max(0.0, _clock() - started), tokens))
        return value


def _inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (memory-cache steps) right here."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a memory cache step suspended")  # pragma: no cover


def _runner_for(cache: Cache) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """How a sync function runs a cache step: in place for memory, else in the background."""
    return _inline if cache._memory is not None else runner().run


class _Flight:
    __slots__ = ("done", "ok", "value", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None
        self.waiters = 0  # threads waiting for this computation (tests wait on it)


def cached(timeout: Timeout = DEFAULT, **options: Unpack[CachedOptions]) -> Decorator:
    """Cache the results of an async or sync function.

    Args:
        timeout: Seconds to keep a result (default: the cache's ``timeout``; None or
            0: until evicted).
        **options: See :class:`CachedOptions`: ``key_prefix``, ``cache_name``, ``key``,
            ``unless``, ``lock``, ``early``.

    Raises:
        ConfigError: at decoration, for a bad or unknown option.
        TypeError: at call time, for an argument that cannot form a key or a result
            that cannot be serialised (the message names it).
    """
    return decorator(timeout, options, group=None, by=None)


def decorator(
    timeout: Timeout, options: CachedOptions, *, group: CacheGroup | None, by: str | None
) -> Decorator:
    """``cached``'s decorator, also grouped (``CacheGroup.cached``)."""
    accepted = CachedOptions.__optional_keys__
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"cached(): unknown option {unknown[0]}= (accepted: timeout, "
            f"{', '.join(sorted(accepted))}{', by' if group is not None else ''})",
            field=unknown[0],
        )

    def decorate(fn: Callable[..., Any]) -> Any:
        if not callable(fn):
            raise TypeError(f"@cached decorates a function, got {fn!r}")
        validated = _Options(fn, timeout=timeout, group=group, by=by, **options)
        if inspect.iscoroutinefunction(fn):
            return AsyncCachedFunction(validated)
        return SyncCachedFunction(validated)

    return decorate
