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

Parsing only: this module imports neither redis-py nor prometheus_client, because
Settings validates URLs with it and ``import zephyr_core`` must stay light (a CLI start,
a Python without redis-py's async dependencies). Clients for a topology are made by
:mod:`zephyr_core._redis_clients`; fail-overs are counted by :mod:`zephyr_core._failovers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from zephyr_core._urls import (
    CLUSTER_SCHEMES,
    REDIS_SCHEMES,
    SENTINEL_SCHEMES,
    mask_url,
    parse_problem,
    single_redis_url_problem,
    split_url_list,
)

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
