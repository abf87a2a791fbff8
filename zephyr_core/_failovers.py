"""Fail-overs seen in this process: a Redis master address that changed between two resolves.

Every master address a Sentinel names (to :func:`zephyr_core._redis_clients.resolve_master`
or to a client following fail-overs by itself) goes through :func:`record_master`; a
different address than last time, for the same URL, counts one fail-over: the
``zephyr_redis_failovers_total{url="<masked>"}`` counter, :func:`failovers_seen`, a
warning in the log and the :func:`on_failover` callbacks.

Only modules that build Redis clients import this one (it needs prometheus_client for the
counter): parsing a URL (:mod:`zephyr_core._topology`) does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import Counter

from zephyr_core._topology import Address, RedisTopology

log = logging.getLogger("zephyr_core.redis")

FAILOVERS = Counter(
    "zephyr_redis_failovers",
    "Times a Redis master address changed between two resolves (Sentinel fail-overs seen)",
    ["url"],
)

FailoverCallback = Callable[[RedisTopology, Address, Address], object]

_lock = threading.Lock()
_last_master: dict[str, Address] = {}
_failovers: dict[str, int] = {}
_callbacks: list[FailoverCallback] = []


def expose_failover_counter(topology: RedisTopology) -> None:
    """Show ``topology``'s fail-over counter on /metrics at 0 before any fail-over."""
    if topology.kind == "sentinel":
        FAILOVERS.labels(url=topology.masked)


def on_failover(callback: FailoverCallback) -> FailoverCallback:
    """Call ``callback(topology, old_address, new_address)`` on each fail-over seen.

    It runs in whatever thread or event loop resolved the master: it must not block.
    Usable as a decorator; :func:`remove_failover_callback` undoes it.
    """
    with _lock:
        _callbacks.append(callback)
    return callback


def remove_failover_callback(callback: FailoverCallback) -> None:
    with _lock:
        if callback in _callbacks:
            _callbacks.remove(callback)


def failovers_seen(url: str) -> int:
    """Fail-overs seen in this process for the topology of ``url`` (as given)."""
    with _lock:
        return _failovers.get(url, 0)


def last_master(url: str) -> Address | None:
    """The master address last resolved for ``url`` in this process, if any."""
    with _lock:
        return _last_master.get(url)


def record_master(topology: RedisTopology, address: Address) -> None:
    """Note the master a resolve returned; a change from the last one is a fail-over."""
    address = (str(address[0]), int(address[1]))
    with _lock:
        old = _last_master.get(topology.url)
        _last_master[topology.url] = address
        changed = old is not None and old != address
        if changed:
            _failovers[topology.url] = _failovers.get(topology.url, 0) + 1
        callbacks = list(_callbacks) if changed else []
    if not changed:
        return
    assert old is not None
    FAILOVERS.labels(url=topology.masked).inc()
    log.warning(
        "Redis fail-over: %s master moved from %s:%s to %s:%s",
        topology.masked,
        old[0],
        old[1],
        address[0],
        address[1],
    )
    for callback in callbacks:
        try:
            callback(topology, old, address)
        except Exception:  # a broken callback must not break the client that resolved
            log.exception("on_failover callback %r failed", callback)
