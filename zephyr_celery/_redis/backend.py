"""Celery's Redis result backend, storing a job's result in one round trip.

Celery's ``_store_result`` first reads the result already stored (a SUCCESS is never
overwritten, so a job delivered twice cannot replace its result with a later
failure), then writes and publishes the new one in a MULTI/EXEC transaction: two
blocking round trips per job, most of a worker child's time on short jobs. Here one
Lua script reads, checks and writes (EVALSHA; EVAL when Redis lost its script cache),
which also makes the check and the write atomic.

The async pool (:mod:`zephyr_celery._pool`) stores the results of the jobs that
finish in one turn of its event loop together: while :meth:`RedisBackend.defer`
collects, a store is kept, and :meth:`RedisBackend.store_deferred` runs the scripts
in one pipeline (one round trip for many jobs) before the pool acknowledges them.

Everything else is Celery's own: the stored meta (``result_extended`` fields too),
``result_expires`` and ``result_failure_expires``, the PUBLISH on the key's channel
that wakes waiters, connection retries (``ensure``, then ``result_backend_always_retry``,
which our app turns on so a job that returned while Redis restarts keeps its result),
groups, chords and ``forget``. A stored value the script cannot read as JSON
(compressed, another serializer) is left to Celery's code, which reads it in Python.

:class:`SentinelBackend` is the same on a ``sentinel://`` (or ``sentinels://``) result
URL: Celery's SentinelBackend with our store, its client made by
:func:`zephyr_core._redis_clients.sync_client` (redis-py's ``Sentinel.master_for``), so
results are stored on the current master: after a fail-over a store's connection
error (or a ``-READONLY`` reply from a demoted master, which redis-py turns into a
connection error) is retried by Celery's ``ensure`` on a connection to the master the
Sentinels name then, and EVALSHA finds the promoted master without the script
(NOSCRIPT: EVAL loads it). The URL is read by our parser, so the master name and the
Sentinels' password can come from REDIS_SENTINEL_MASTER / REDIS_SENTINEL_PASSWORD.

Private internals used:

- ``celery.backends.redis.RedisBackend._store_result``
- ``celery.backends.redis.RedisBackend._MAX_STR_VALUE_SIZE``
- ``celery.backends.base.Backend._get_result_meta``
- ``celery.backends.redis.SentinelBackend._params_from_url``
- ``celery.backends.redis.SentinelBackend._get_pool``
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from celery import states
from celery.backends.redis import RedisBackend as CeleryRedisBackend
from celery.backends.redis import SentinelBackend as CelerySentinelBackend
from celery.exceptions import ImproperlyConfigured
from kombu.utils.encoding import bytes_to_str
from redis import Redis
from redis.exceptions import NoScriptError

from zephyr_core import mask_url
from zephyr_core._redis_clients import sync_client
from zephyr_core._topology import RedisTopology

#: The class for ``redis://`` and ``rediss://`` result URLs (TLS is the same class,
#: as in Celery: the URL picks the connection).
BACKEND = "zephyr_celery._redis.backend:RedisBackend"

#: The class for ``sentinel://`` and ``sentinels://`` result URLs.
SENTINEL_BACKEND = "zephyr_celery._redis.backend:SentinelBackend"

#: Result backend aliases an app's loader resolves before Celery's own: the app's
#: ``result_backend`` keeps the user's URL (status output, Flower) and its scheme
#: picks this class.
BACKEND_ALIASES = {
    "redis": BACKEND,
    "rediss": BACKEND,
    "sentinel": SENTINEL_BACKEND,
    "sentinels": SENTINEL_BACKEND,
}

# KEYS[1]: the result key; ARGV[1]: the encoded meta; ARGV[2]: seconds to keep it
# (0: no expiry, like Celery's SET without SETEX). Returns STORED, KEPT or UNREAD.
# The check is Celery's: an empty or missing value reads as PENDING, and only a
# stored status of SUCCESS keeps the old value (no write, no publish).
STORE_RESULT_LUA = """
local current = redis.call('GET', KEYS[1])
if current and current ~= '' then
    local ok, meta = pcall(cjson.decode, current)
    if not ok or type(meta) ~= 'table' or type(meta['status']) ~= 'string' then
        return -1
    end
    if meta['status'] == 'SUCCESS' then
        return 0
    end
end
local expires = tonumber(ARGV[2])
if expires ~= 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
    redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""
STORE_RESULT_SHA = hashlib.sha1(STORE_RESULT_LUA.encode()).hexdigest()

STORED, KEPT, UNREAD = 1, 0, -1


class RedisBackend(CeleryRedisBackend):  # type: ignore[misc]  # celery ships no type hints
    """Celery's RedisBackend with ``_store_result`` in one round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The script reads stored values as plain JSON: with another serializer or
        # with compression, results are stored by Celery's own code.
        self._one_trip = (
            self.content_type == "application/json"
            and self.content_type in self.accept
            and not self.compression
        )
        # Stores kept by defer(): (key, value, expires, store_result arguments).
        # Celery gives each thread its own backend, so this is the thread's.
        self._deferred: list[tuple[bytes, Any, int, tuple[Any, ...]]] | None = None

    @contextmanager
    def defer(self, into: list[tuple[bytes, Any, int, tuple[Any, ...]]]) -> Iterator[None]:
        """While inside, results stored through the script are appended to ``into``."""
        self._deferred = into
        try:
            yield
        finally:
            self._deferred = None

    def store_deferred(self, stores: list[tuple[bytes, Any, int, tuple[Any, ...]]]) -> None:
        """Store what :meth:`defer` collected: the scripts in one pipelined round trip.

        A value the script cannot read, a store that fails after the backend's
        retries: each is stored again one by one by Celery's own path (its retries).
        """
        try:
            replies = self.ensure(self._run_store_pipeline, (stores,))
        except Exception:
            replies = [UNREAD] * len(stores)
        for reply, (_key, _value, _expires, arguments) in zip(replies, stores, strict=True):
            if reply == UNREAD:
                self.store_result(*arguments)

    def _store_result(
        self,
        task_id: Any,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not self._one_trip:
            return super()._store_result(task_id, result, state, traceback, request, **kwargs)
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)  # type: ignore[no-untyped-call]
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            # Celery refuses it, after its check (a stored SUCCESS is kept silently).
            return super()._store_result(task_id, result, state, traceback, request, **kwargs)
        # Celery's _set_with_state: failures keep their own expiry.
        expires = self.failure_expires if state == states.FAILURE else self.expires
        key = self.get_key_for_task(task_id)
        if self._deferred is not None:
            self._deferred.append(
                (key, value, expires or 0, (task_id, result, state, traceback, request))
            )
            return result
        # ensure() retries connection errors with the backend's retry policy, as
        # Celery's set() does for its write.
        if self.ensure(self._run_store_script, (key, value, expires or 0)) == UNREAD:
            # Not JSON the script can read (compressed by a worker configured with
            # result_compression, say): Celery's code decodes it and decides.
            return super()._store_result(task_id, result, state, traceback, request, **kwargs)
        return result

    def _run_store_pipeline(
        self, stores: list[tuple[bytes, Any, int, tuple[Any, ...]]]
    ) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key, value, expires, _arguments in stores:
            pipe.evalsha(STORE_RESULT_SHA, 1, key, value, expires)
        replies = pipe.execute(raise_on_error=False)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self.client.script_load(STORE_RESULT_LUA)  # lost by a restart: load, again
            return self._run_store_pipeline(stores)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [int(reply) for reply in replies]

    def _run_store_script(self, key: bytes, value: str | bytes, expires: int) -> int:
        client = self.client
        try:
            return int(client.evalsha(STORE_RESULT_SHA, 1, key, value, expires))
        except NoScriptError:
            # Redis restarted, failed over or ran SCRIPT FLUSH: EVAL runs the script
            # and caches it again for the next EVALSHA.
            return int(client.eval(STORE_RESULT_LUA, 1, key, value, expires))


# Connection options the topology gives (the master's address comes from Sentinel).
_FROM_TOPOLOGY = ("host", "port", "db", "username", "password", "hosts")


class SentinelBackend(RedisBackend, CelerySentinelBackend):  # type: ignore[misc]
    """Our store on a Sentinel-managed master, following it through fail-overs."""

    _topology: RedisTopology

    def _params_from_url(self, url: str, defaults: dict[str, Any]) -> dict[str, Any]:
        # The whole URL list is read by our parser (Celery's would pass ?master_name=
        # on to redis-py); what remains are Celery's connection options.
        from zephyr_celery._redis.master import app_topology  # imports the app module

        options = self.app.conf.get("result_backend_transport_options") or {}
        topology = app_topology(self.app, url, options)
        if topology is None or topology.kind != "sentinel":
            raise ImproperlyConfigured(
                f"result backend {mask_url(url)!r}: not a Sentinel URL with a master name "
                "(sentinel://host:26379;sentinel://host2:26379/0?master_name=mymaster, "
                "or set REDIS_SENTINEL_MASTER)"
            )
        self._topology = topology
        return {
            key: value
            for key, value in defaults.items()
            if key not in _FROM_TOPOLOGY and value is not None
        }

    def _get_pool(self, **params: Any) -> Any:
        client = cast(Redis, sync_client(self._topology, **params))  # Sentinel: a Redis
        return client.connection_pool

    def as_uri(self, include_password: bool = False) -> str:
        return str(self.url) if include_password else mask_url(str(self.url or ""))
