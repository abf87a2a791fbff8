"""The built-in Redis readiness probes: for each Redis the settings name, the master it reaches.

One check per distinct Redis (URLs naming the same server, the same Sentinel-managed
master or the same Cluster share one), reporting its kind, the settings that use it and
the master reached:

- single server: PING it;
- Sentinel: ask the Sentinels for the master (failing when none answers or none knows
  an up master, saying what each Sentinel said), then check that server answers ROLE
  as a master (a Sentinel may still name a dead or demoted one during a fail-over);
- Cluster: ``cluster_state:ok`` and a PING to every master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff

from zephyr_core._failovers import expose_failover_counter
from zephyr_core._redis_clients import async_client, resolve_master, sentinel_kwargs, server_kwargs
from zephyr_core._settings import Settings, get_settings, redis_urls_by_setting
from zephyr_core._topology import Address, RedisTopology

Probe = Callable[[], Awaitable[object]]

#: Seconds each connection may take (connect, then each reply).
SOCKET_TIMEOUT = 1.0
#: Seconds a Sentinel or Cluster check may take in all (a few round trips).
HA_CHECK_TIMEOUT = 3.0
SINGLE_CHECK_TIMEOUT = 2.0


class RedisProbeFailed(Exception):
    """A Redis check failed; ``details`` (kind, url, settings) go into the report too."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def _identity(topology: RedisTopology) -> tuple[object, ...]:
    """What makes two URLs the same Redis to probe (a db is not another server)."""
    if topology.kind == "sentinel":
        return ("sentinel", tuple(sorted(topology.nodes)), topology.master_name)
    if topology.kind == "cluster":
        return ("cluster", tuple(sorted(topology.nodes)))
    return ("single", topology.socket_path or topology.nodes[0])


def check_name(topology: RedisTopology) -> str:
    """``redis@host:port``, ``redis@sentinel:<master>`` or ``redis@cluster:<first seed>``."""
    if topology.kind == "sentinel":
        return f"redis@sentinel:{topology.master_name}"
    if topology.kind == "cluster":
        return f"redis@cluster:{_label(topology.nodes[0])}"
    return f"redis@{topology.socket_path or _label(topology.nodes[0])}"


def redis_checks(settings: Settings) -> list[tuple[str, Probe, float]]:
    """``(name, probe, timeout)`` per distinct Redis; a lone one is named ``redis``."""
    groups: dict[tuple[object, ...], tuple[RedisTopology, list[str]]] = {}
    for field, url in redis_urls_by_setting(settings).items():
        topology = settings.redis_topology(url)
        groups.setdefault(_identity(topology), (topology, []))[1].append(field)
    checks: list[tuple[str, Probe, float]] = []
    for topology, fields in groups.values():
        expose_failover_counter(topology)
        name = "redis" if len(groups) == 1 else check_name(topology)
        timeout = SINGLE_CHECK_TIMEOUT if topology.kind == "single" else HA_CHECK_TIMEOUT
        checks.append((name, topology_probe(topology, fields), timeout))
    return checks


def redis_probe(url: str, settings: Settings | None = None) -> Probe:
    """A probe for the Redis behind ``url`` (see :func:`topology_probe`).

    The URL is parsed when the probe runs, with REDIS_SENTINEL_MASTER / _PASSWORD from
    ``settings`` (default: :func:`get_settings`), so a bad URL fails the check, naming
    the problem, instead of the code that builds the checks.
    """

    async def probe() -> dict[str, Any]:
        topology = (settings or get_settings()).redis_topology(url)
        result: dict[str, Any] = await topology_probe(topology, [])()
        return result

    return probe


def topology_probe(
    topology: RedisTopology, fields: list[str]
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A probe that reaches ``topology``'s master(s) on fresh connections."""
    details: dict[str, Any] = {"kind": topology.kind, "url": topology.masked}
    if fields:
        details["settings"] = fields
    if topology.kind == "sentinel":
        return lambda: _probe_sentinel(topology, details)
    if topology.kind == "cluster":
        return lambda: _probe_cluster(topology, details)
    return lambda: _probe_single(topology, details)


def _label(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _timeouts() -> dict[str, Any]:
    return {"socket_connect_timeout": SOCKET_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT}


async def _probe_single(topology: RedisTopology, details: dict[str, Any]) -> dict[str, Any]:
    client = AsyncRedis.from_url(topology.url, **_timeouts())
    try:
        await client.ping()
    finally:
        await client.aclose()
    master = topology.socket_path or _label(topology.nodes[0])
    return {**details, "master": master}


async def _probe_sentinel(topology: RedisTopology, details: dict[str, Any]) -> dict[str, Any]:
    try:
        address = await resolve_master(topology, timeout=SOCKET_TIMEOUT)
    except MasterNotFoundError:
        raise RedisProbeFailed(await _sentinels_say(topology), details) from None
    master = _label(address)
    client = AsyncRedis(host=address[0], port=address[1], **server_kwargs(topology, _timeouts()))
    try:
        role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise RedisProbeFailed(
            f"master {master} (named by the Sentinels) does not answer: "
            f"{type(exc).__name__}: {exc}",
            {**details, "master": master},
        ) from None
    finally:
        await client.aclose()
    kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    if kind != "master":
        raise RedisProbeFailed(
            f"{master}, named master by the Sentinels, is a {kind} (a fail-over is under way)",
            {**details, "master": master},
        )
    return {**details, "master": master, "sentinels": len(topology.nodes)}


async def _sentinels_say(topology: RedisTopology) -> str:
    """Why no master was found: what each Sentinel answers about it."""
    name = topology.master_name

    async def ask(address: Address) -> str:
        options = sentinel_kwargs(topology, _timeouts())
        sentinel = AsyncRedis(
            host=address[0], port=address[1], retry=AsyncRetry(NoBackoff(), 0), **options
        )
        try:
            state: Any = await sentinel.sentinel_master(name)
        except Exception as exc:
            return f"{_label(address)}: {type(exc).__name__}: {exc}"
        finally:
            await sentinel.aclose()
        flags = state.get("flags", "")
        return f"{_label(address)}: names {state.get('ip')}:{state.get('port')} ({flags})"

    answers = await asyncio.gather(*(ask(address) for address in topology.nodes))
    return f"no up master known for {name!r} by {len(answers)} Sentinel(s): " + "; ".join(answers)


async def _probe_cluster(topology: RedisTopology, details: dict[str, Any]) -> dict[str, Any]:
    client = async_client(topology, **_timeouts())
    assert isinstance(client, AsyncRedisCluster)
    try:
        try:
            await client.initialize()
            info = await client.cluster_info()
        except Exception as exc:
            raise RedisProbeFailed(
                f"no seed node answers: {type(exc).__name__}: {exc}", details
            ) from None
        state = info.get("cluster_state")
        masters = client.get_primaries()
        labels = [_label((node.host, int(node.port))) for node in masters]
        found = {**details, "masters": labels, "cluster_state": state}
        if state != "ok":
            raise RedisProbeFailed(f"cluster_state is {state!r}, not 'ok'", found)
        pings = await asyncio.gather(
            *(client.execute_command("PING", target_nodes=node) for node in masters),
            return_exceptions=True,
        )
        down = [
            f"{label}: {type(result).__name__}: {result}"
            for label, result in zip(labels, pings, strict=True)
            if isinstance(result, BaseException)
        ]
        if down:
            raise RedisProbeFailed("masters do not answer: " + "; ".join(down), found)
        return found
    finally:
        await client.aclose()
