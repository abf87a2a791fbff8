"""Which Redis a URL means: one server, a Sentinel-managed master, or a Redis Cluster.

URL forms (the Sentinel one is kombu's and Celery's, so the same URL works there):

- ``redis://[[user]:password@]host:6379/0``, ``rediss://`` (TLS), ``unix:///path?db=0``;
- ``sentinel://[:password@]host:26379;sentinel://[:password@]host2:26379/0?master_name=m``:
  ``;`` separates the Sentinels; the userinfo password is the *Redis servers'* password;
  the db and the query may be on any part (usually the last). ``sentinels://`` is the
  same over TLS (servers and Sentinels). The Sentinels' own password comes from
  ``?sentinel_password=`` or the REDIS_SENTINEL_PASSWORD setting, the master name from
  ``?master_name=`` or REDIS_SENTINEL_MASTER (the URL wins);
- ``redis+cluster://[:password@]host:7000,host2:7001`` (``rediss+cluster://`` over TLS):
  the seed nodes of a Redis Cluster; the db must be 0 (a cluster has one keyspace).

Clients for Sentinel come from redis-py's ``Sentinel.master_for``, so they find the new
master after a fail-over by themselves. Every master address a Sentinel names (to us or
to such a client) is recorded: a different address than last time counts one fail-over
(:func:`failovers_seen`, the ``zephyr_redis_failovers_total`` counter, :func:`on_failover`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from prometheus_client import Counter
from redis import Redis, RedisCluster
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from zephyr_core._urls import (
    CLUSTER_SCHEMES,
    REDIS_SCHEMES,
    SENTINEL_SCHEMES,
    mask_url,
    parse_problem,
    single_redis_url_problem,
    split_url_list,
)

log = logging.getLogger("zephyr_core.redis")

Kind = Literal["single", "sentinel", "cluster"]
Address = tuple[str, int]

SENTINEL_PORT = 26379
REDIS_PORT = 6379

#: Query parameters that configure TLS, passed to redis-py as they are named.
SSL_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_CERT_REQS = {"none": "none", "optional": "optional", "required": "required"}
_SENTINEL_QUERY = ("master_name", "sentinel_password", "sentinel_username", *SSL_OPTIONS)
_CLUSTER_QUERY = SSL_OPTIONS


@dataclass(frozen=True)
class RedisTopology:
    """What a Redis URL points at, parsed once. Never shows a password in its repr."""

    kind: Kind
    url: str = field(repr=False)
    nodes: tuple[Address, ...]
    master_name: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    ssl_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    socket_path: str | None = None

    @property
    def masked(self) -> str:
        """The URL with every password masked."""
        return mask_url(self.url)

    def describe(self) -> str:
        """One line for humans, e.g. ``Sentinel master 'mymaster' via 3 Sentinels, db 0``."""
        tls = ", TLS" if self.tls else ""
        if self.kind == "sentinel":
            count = len(self.nodes)
            plural = "Sentinel" if count == 1 else "Sentinels"
            return f"Sentinel master {self.master_name!r} via {count} {plural}, db {self.db}{tls}"
        if self.kind == "cluster":
            count = len(self.nodes)
            return f"Redis Cluster, {count} seed node{'' if count == 1 else 's'}{tls}"
        if self.socket_path is not None:
            return f"single server unix socket {self.socket_path} db {self.db}"
        host, port = self.nodes[0]
        return f"single server {_host_label(host)}:{port} db {self.db}{tls}"

    def __repr__(self) -> str:
        return f"RedisTopology({self.describe()!r}, url={self.masked!r})"


def _host_label(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _UrlProblem(ValueError):
    """A problem with a URL, worded without quoting any password."""


def parse_redis_url(
    url: str,
    *,
    master_name: str | None = None,
    sentinel_password: str | None = None,
    allow_cluster: bool = True,
    require_master_name: bool = True,
) -> RedisTopology:
    """Parse a Redis URL of any accepted form; raise ValueError naming what is wrong.

    ``master_name`` and ``sentinel_password`` apply to Sentinel URLs that do not give
    their own (``?master_name=``, ``?sentinel_password=``). With
    ``require_master_name=False`` a Sentinel URL may lack a master name (validation
    before the setting that would give it is known).
    """
    try:
        return _parse(url, master_name, sentinel_password, allow_cluster, require_master_name)
    except _UrlProblem as exc:
        raise ValueError(f"Redis URL {mask_url(url)!r}: {exc}") from None


def topology_problem(url: str, *, allow_cluster: bool = False) -> str | None:
    """What is wrong with ``url`` as a Redis URL, or ``None`` (master name not required)."""
    try:
        _parse(url, None, None, allow_cluster, require_master=False)
    except _UrlProblem as exc:
        return str(exc)
    return None


MASTER_NAME_MISSING = (
    "a Sentinel URL needs the master's name: add ?master_name=<name> to the URL or set "
    "REDIS_SENTINEL_MASTER"
)


def master_name_missing(url: str) -> str:
    """The error for a Sentinel URL with no master name from anywhere."""
    return f"Redis URL {mask_url(url)!r}: {MASTER_NAME_MISSING}"


def _parse(
    url: str,
    master_name: str | None,
    sentinel_password: str | None,
    allow_cluster: bool,
    require_master: bool,
) -> RedisTopology:
    if not isinstance(url, str):
        raise _UrlProblem("it is not a string")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in SENTINEL_SCHEMES:
        return _parse_sentinel(url, master_name, sentinel_password, require_master)
    if scheme in CLUSTER_SCHEMES:
        if not allow_cluster:
            raise _UrlProblem(
                "a Redis Cluster URL is not accepted here (Celery's broker and result "
                "backend need one keyspace); use redis://, rediss://, unix://, sentinel:// "
                "or sentinels://"
            )
        return _parse_cluster(url)
    if problem := single_redis_url_problem(url):
        if scheme not in REDIS_SCHEMES:
            accepted = [*REDIS_SCHEMES, *SENTINEL_SCHEMES]
            if allow_cluster:
                accepted += CLUSTER_SCHEMES
            problem = f"the scheme must be one of {', '.join(s + '://' for s in accepted)}"
        raise _UrlProblem(problem)
    return _parse_single(url)


def _parse_single(url: str) -> RedisTopology:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        db = query.get("db", "0")
        if not db.isdigit():
            raise _UrlProblem(f"the database must be a number, got {db!r}")
        return RedisTopology(
            kind="single",
            url=url,
            nodes=(),
            db=int(db),
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            socket_path=parts.path,
        )
    return RedisTopology(
        kind="single",
        url=url,
        nodes=((parts.hostname or "localhost", parts.port or REDIS_PORT),),
        db=int(parts.path.lstrip("/") or 0),
        username=_unquoted(parts.username),
        password=_unquoted(parts.password),
        tls=parts.scheme == "rediss",
        ssl_options=_ssl_options(query),
    )


def _parse_sentinel(
    url: str, master_name: str | None, sentinel_password: str | None, require_master: bool
) -> RedisTopology:
    entries = split_url_list(url)
    schemes = {entry.partition("://")[0].lower() for entry in entries}
    if len(schemes) != 1 or not schemes <= set(SENTINEL_SCHEMES):
        raise _UrlProblem(
            "every part of a Sentinel URL list must use the same scheme, sentinel:// or "
            "sentinels:// (TLS), e.g. sentinel://h1:26379;sentinel://h2:26379/0?master_name=m"
        )
    nodes: list[Address] = []
    users: set[str] = set()
    passwords: set[str] = set()
    dbs: set[int] = set()
    query: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        where = f"Sentinel {number} of {len(entries)}" if len(entries) > 1 else "the Sentinel"
        parts = _split_network_url(entry, where, SENTINEL_PORT)
        nodes.append(parts.address)
        if parts.username:
            users.add(parts.username)
        if parts.password is not None:
            passwords.add(parts.password)
        if parts.db is not None:
            dbs.add(parts.db)
        for key, value in parts.query.items():
            if query.setdefault(key, value) != value:
                raise _UrlProblem(f"the parts give different values for {key}=")
    if len(passwords) > 1 or len(users) > 1:
        raise _UrlProblem("the parts give different user names or passwords for Redis")
    if len(dbs) > 1:
        raise _UrlProblem(f"the parts give different databases ({sorted(dbs)})")
    _check_query(query, _SENTINEL_QUERY)
    name = query.get("master_name") or master_name
    if require_master and not name:
        raise _UrlProblem(MASTER_NAME_MISSING)
    return RedisTopology(
        kind="sentinel",
        url=url,
        nodes=tuple(nodes),
        master_name=name,
        db=dbs.pop() if dbs else 0,
        username=users.pop() if users else None,
        password=passwords.pop() if passwords else None,
        sentinel_username=query.get("sentinel_username"),
        sentinel_password=query.get("sentinel_password") or sentinel_password,
        tls=schemes == {"sentinels"},
        ssl_options=_ssl_options(query),
    )


def _parse_cluster(url: str) -> RedisTopology:
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = authority.rpartition("@")
    if not hosts:
        raise _UrlProblem("it has no host (expected redis+cluster://host:7000,host2:7001)")
    nodes: list[Address] = []
    db: int | None = None
    query: dict[str, str] = {}
    entries = hosts.split(",")
    for number, host in enumerate(entries, 1):
        where = f"seed node {number} of {len(entries)}" if len(entries) > 1 else "the node"
        # Each seed node, checked as a one-host URL with the same userinfo and tail.
        parts = _split_network_url(f"redis://{userinfo}{at}{host}{tail}", where, REDIS_PORT)
        nodes.append(parts.address)
        db, query = parts.db, parts.query
    if db not in (None, 0):
        raise _UrlProblem(f"a Redis Cluster has only database 0, got {db}")
    _check_query(query, _CLUSTER_QUERY)
    first = urlsplit(f"redis://{userinfo}{at}x")
    return RedisTopology(
        kind="cluster",
        url=url,
        nodes=tuple(nodes),
        username=_unquoted(first.username),
        password=_unquoted(first.password),
        tls=scheme.lower() == "rediss+cluster",
        ssl_options=_ssl_options(query),
    )


@dataclass(frozen=True)
class _NetworkUrl:
    address: Address
    username: str | None
    password: str | None
    db: int | None
    query: dict[str, str]


def _split_network_url(url: str, where: str, default_port: int) -> _NetworkUrl:
    if problem := parse_problem(url):
        raise _UrlProblem(f"{where}: {problem}")
    parts = urlsplit(url)
    if not parts.hostname:
        raise _UrlProblem(f"{where} has no host (expected host:port)")
    port = parts.port
    if port is not None and not 0 < port < 65536:
        raise _UrlProblem(f"{where}: the port must be between 1 and 65535")
    db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise _UrlProblem(f"{where}: the database must be a number, got {db_text!r}")
    return _NetworkUrl(
        address=(parts.hostname, port or default_port),
        username=_unquoted(parts.username),
        password=_unquoted(parts.password),
        db=int(db_text) if db_text else None,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
    )


def _check_query(query: dict[str, str], accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(accepted))
    if unknown:
        raise _UrlProblem(
            f"unknown query parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    reqs = query.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower().removeprefix("cert_") not in _CERT_REQS:
        raise _UrlProblem(
            f"ssl_cert_reqs={reqs!r}: expected none, optional or required (or CERT_NONE, ...)"
        )


def _ssl_options(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in SSL_OPTIONS:
        if key not in query:
            continue
        value: Any = query[key]
        if key == "ssl_cert_reqs":
            value = _CERT_REQS.get(value.lower().removeprefix("cert_"), value)
        elif key == "ssl_check_hostname":
            value = value.lower() in ("1", "true", "yes", "on")
        options[key] = value
    return options


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value else None


# -- fail-over bookkeeping -----------------------------------------------------------------

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


# -- clients -------------------------------------------------------------------------------


class _RecordingSentinel(Sentinel):
    """redis-py's Sentinel, noting each master it discovers (its clients call this too)."""

    def __init__(self, topology: RedisTopology, **kwargs: Any) -> None:
        super().__init__(list(topology.nodes), **kwargs)  # type: ignore[no-untyped-call]
        self.topology = topology

    def discover_master(self, service_name: str) -> Address:
        try:
            address: Address = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            # redis-py's message holds the repr of every Sentinel client: say it shorter.
            raise MasterNotFoundError(_not_found(self.topology, service_name)) from None
        record_master(self.topology, address)
        return address


class _AsyncRecordingSentinel(AsyncSentinel):
    """redis.asyncio's Sentinel, noting each master it discovers."""

    def __init__(self, topology: RedisTopology, **kwargs: Any) -> None:
        super().__init__(list(topology.nodes), **kwargs)  # type: ignore[no-untyped-call]
        self.topology = topology

    async def discover_master(self, service_name: str) -> Address:
        try:
            address: Address = await super().discover_master(service_name)
        except AsyncMasterNotFoundError:
            raise AsyncMasterNotFoundError(_not_found(self.topology, service_name)) from None
        record_master(self.topology, address)
        return address


def _not_found(topology: RedisTopology, service_name: str) -> str:
    where = ", ".join(f"{host}:{port}" for host, port in topology.nodes)
    return (
        f"No master found for {service_name!r} by the Sentinels at {where}: none answered, "
        "or none names an up master"
    )


class _SentinelRedis(Redis):
    """A master client that also closes the connections to the Sentinels it asks."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            manager.close()


class _AsyncSentinelRedis(AsyncRedis):
    """An async master client that also closes the connections to its Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            await manager.aclose()


def _tls_kwargs(topology: RedisTopology) -> dict[str, Any]:
    return {"ssl": True, **topology.ssl_options} if topology.tls else {}


def sentinel_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection options for the Sentinels themselves (their password, TLS, timeouts).

    No retries (``retry`` is set by the callers): redis-py's default retries each
    refused Sentinel with back-off, seconds per dead Sentinel, when the next Sentinel
    in the list is the better retry.
    """
    kwargs: dict[str, Any] = {
        key: value for key, value in redis_kwargs.items() if key.startswith("socket_")
    }
    kwargs.setdefault("socket_connect_timeout", 1.0)
    kwargs.setdefault("socket_timeout", 1.0)
    if topology.sentinel_password is not None:
        kwargs["password"] = topology.sentinel_password
    if topology.sentinel_username is not None:
        kwargs["username"] = topology.sentinel_username
    return {**kwargs, **_tls_kwargs(topology)}


def server_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection options for the Redis servers (their password, db, TLS), then the caller's."""
    kwargs: dict[str, Any] = {"db": topology.db, **_tls_kwargs(topology)}
    if topology.password is not None:
        kwargs["password"] = topology.password
    if topology.username is not None:
        kwargs["username"] = topology.username
    return {**kwargs, **redis_kwargs}


def _need_master_name(topology: RedisTopology) -> str:
    if not topology.master_name:
        raise ValueError(master_name_missing(topology.url))
    return topology.master_name


def sentinel_manager(topology: RedisTopology, **redis_kwargs: Any) -> Sentinel:
    """A redis-py Sentinel for ``topology`` whose discoveries are recorded."""
    options = sentinel_kwargs(topology, redis_kwargs)
    return _RecordingSentinel(topology, sentinel_kwargs={**options, "retry": Retry(NoBackoff(), 0)})


def async_sentinel_manager(topology: RedisTopology, **redis_kwargs: Any) -> AsyncSentinel:
    """A redis.asyncio Sentinel for ``topology`` whose discoveries are recorded."""
    options = {**sentinel_kwargs(topology, redis_kwargs), "retry": AsyncRetry(NoBackoff(), 0)}
    return _AsyncRecordingSentinel(topology, sentinel_kwargs=options)


def sync_client(topology: RedisTopology, **redis_kwargs: Any) -> Redis | RedisCluster:
    """A redis-py client for ``topology``: it follows Sentinel fail-overs by itself.

    ``redis_kwargs`` (``decode_responses``, ``socket_timeout``, ...) apply to the Redis
    servers; ``socket_*`` ones apply to the Sentinels too.
    """
    if topology.kind == "sentinel":
        name = _need_master_name(topology)
        manager = sentinel_manager(topology, **redis_kwargs)
        client: Redis = manager.master_for(  # type: ignore[no-untyped-call]
            name, redis_class=_SentinelRedis, **server_kwargs(topology, redis_kwargs)
        )
        return client
    if topology.kind == "cluster":
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in topology.nodes
            ],
            **_cluster_kwargs(topology, redis_kwargs),
        )
    single: Redis = Redis.from_url(topology.url, **redis_kwargs)
    return single


def async_client(topology: RedisTopology, **redis_kwargs: Any) -> AsyncRedis | AsyncRedisCluster:
    """A redis.asyncio client for ``topology`` (see :func:`sync_client`)."""
    if topology.kind == "sentinel":
        name = _need_master_name(topology)
        manager = async_sentinel_manager(topology, **redis_kwargs)
        client: AsyncRedis = manager.master_for(
            name, redis_class=_AsyncSentinelRedis, **server_kwargs(topology, redis_kwargs)
        )
        return client
    if topology.kind == "cluster":
        return AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in topology.nodes],
            **_cluster_kwargs(topology, redis_kwargs),
        )
    single: AsyncRedis = AsyncRedis.from_url(topology.url, **redis_kwargs)
    return single


def _cluster_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = server_kwargs(topology, redis_kwargs)
    kwargs.pop("db", None)  # RedisCluster takes no db: a cluster has only db 0
    return kwargs


def resolve_master_sync(topology: RedisTopology, *, timeout: float = 1.0) -> Address:
    """The server that is master now: asks the Sentinels (single: the server itself).

    A Cluster has one master per slot range: this returns the first seed node.
    Raises ``redis.sentinel.MasterNotFoundError`` when no Sentinel names a master.
    """
    if topology.kind != "sentinel":
        return _first_node(topology)
    manager = sentinel_manager(topology, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        name = _need_master_name(topology)
        address: Address = manager.discover_master(name)  # type: ignore[no-untyped-call]
    finally:
        manager.close()
    return (str(address[0]), int(address[1]))


async def resolve_master(topology: RedisTopology, *, timeout: float = 1.0) -> Address:
    """Async :func:`resolve_master_sync`."""
    if topology.kind != "sentinel":
        return _first_node(topology)
    manager = async_sentinel_manager(
        topology, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        address: Address = await manager.discover_master(_need_master_name(topology))
    finally:
        await manager.aclose()
    return (str(address[0]), int(address[1]))


def _first_node(topology: RedisTopology) -> Address:
    if topology.socket_path is not None:
        return (topology.socket_path, 0)
    return topology.nodes[0]
