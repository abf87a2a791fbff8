"""Our Redis transport on the master a group of Sentinels names, through fail-overs.

kombu's ``sentinel://`` transport (``kombu.transport.redis.SentinelChannel``) asks the
Sentinels for the master whenever it opens a connection, but it is kombu's plain
Redis channel: a BRPOP and a second round trip per message. Here the same Sentinel
lookup sits under our channel (:mod:`.transport`: the atomic pop, the restore sweep,
the heartbeat, the stranded record), so all of that works on a Sentinel-managed
master, and a worker follows a fail-over on its own:

- the master dies: the consumer's connection breaks, Celery closes the channel (what
  it held is written down in :mod:`.stranded`, Redis being unreachable) and opens a
  new one;
- :meth:`SentinelTransport.establish_connection` asks the Sentinels again every
  :data:`FAILOVER_POLL` seconds while they still name the dead master (or no master,
  mid fail-over), for up to ``failover_wait`` seconds per attempt, instead of
  leaving it to Celery's reconnect backoff (2, 4, 6... seconds between rounds);
- the new channel is on the promoted replica: its first poll puts back what the
  worker held, from the replicated unacked records, and keeps what Celery still runs.

The stranded record is keyed by the master group (:meth:`SentinelChannel.broker_identity`),
not by a server, so the channel on the new master finds what the old one left. Each
master the Sentinels name is recorded with the foundation's fail-over bookkeeping
(``zephyr_core._failovers.record_master``: the log line, ``failovers_seen``, the
``zephyr_redis_failovers_total`` counter, ``on_failover`` callbacks) when the topology
was registered by :mod:`zephyr_celery._broker` (:func:`register_topology`).

kombu's alternates (``a;b;c``) name the Sentinels. Each alternate is also a URL kombu
may switch to between connection attempts, and kombu picks the transport from its
scheme: a ``sentinel://`` alternate would swap in kombu's own transport. The URLs
handed to kombu (:mod:`zephyr_celery._broker`) therefore use our scheme,
``zephyr-sentinel://``, and every Sentinel of the list is used, whatever its scheme.

Private internals used:

- ``kombu.transport.redis.Channel._connparams``
- ``kombu.transport.redis.Channel._sentinel_manager``
- ``kombu.transport.redis.Channel._async_sentinel_manager``
- ``kombu.transport.redis.SentinelChannel._sentinel_managed_pool``
"""

# kombu ships py.typed, yet the transport's methods carry no annotations.
# mypy: allow-untyped-calls

from __future__ import annotations

import logging
from time import monotonic, sleep
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry
from redis.sentinel import Sentinel

from zephyr_celery._redis.transport import Channel, Transport
from zephyr_core import ConfigError
from zephyr_core._failovers import record_master
from zephyr_core._topology import RedisTopology

#: Seconds between two questions to the Sentinels while a fail-over is under way.
FAILOVER_POLL = 0.1
#: Default seconds one connection attempt keeps asking before kombu's backoff takes over.
DEFAULT_FAILOVER_WAIT = 5.0
#: The port a Sentinel listens on when its URL names none.
SENTINEL_PORT = 26379

#: Errors that no fail-over will fix: raised at once.
NOT_FAILOVER = (AuthenticationError, AuthorizationError)

logger = logging.getLogger("zephyr_celery.transport")


#: (master name, Sentinels) -> the topology the app was configured with.
_topologies: dict[tuple[str, tuple[tuple[str, int], ...]], RedisTopology] = {}


def _group(master_name: str | None, sentinels: list[tuple[str, int]]) -> tuple[str, Any]:
    return str(master_name), tuple(sorted((str(h), int(p)) for h, p in sentinels))


def register_topology(topology: RedisTopology) -> None:
    """Record the masters this process's channels discover for ``topology`` (fail-overs)."""
    _topologies[_group(topology.master_name, list(topology.nodes))] = topology


class RecordingSentinel(Sentinel):
    """redis-py's Sentinel, noting each master it names for the fail-over bookkeeping."""

    def __init__(self, *args: Any, topology: RedisTopology | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topology = topology

    def discover_master(self, service_name: str) -> Any:
        address = super().discover_master(service_name)
        if self.topology is not None:
            record_master(self.topology, address)
        return address


def sentinel_addresses(urls: list[str], default: tuple[str, int]) -> list[tuple[str, int]]:
    """The (host, port) of each Sentinel URL of kombu's alternates; ``default`` if none."""
    found: list[tuple[str, int]] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.hostname:
            found.append((parts.hostname, parts.port or SENTINEL_PORT))
    return found or [default]


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """Our channel (:class:`.transport.Channel`) on the master the Sentinels name."""

    from_transport_options = (  # type: ignore[assignment]
        *Channel.from_transport_options,
        *(
            option
            for option in kombu_redis.SentinelChannel.from_transport_options
            if option not in Channel.from_transport_options
        ),
    )

    master_name: str | None = None
    sentinel_kwargs: dict[str, Any] | None = None
    min_other_sentinels = 0

    def sentinels(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses, from the connection URL's alternates."""
        client = self.connection.client
        default = (str(client.hostname or "127.0.0.1"), int(client.port or SENTINEL_PORT))
        return sentinel_addresses([str(url) for url in client.alt or ()], default)

    def broker_identity(self) -> tuple[str, int, str, str, str]:
        """The master group (its name and Sentinels), never the server that is master now."""
        client = self.connection.client
        group = ",".join(f"{host}:{port}" for host, port in sorted(self.sentinels()))
        return (
            f"sentinel:{self.master_name}@{group}",
            0,
            str(client.virtual_host),
            str(client.userid),
            str(self.global_keyprefix),
        )

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        # kombu's own, but with every alternate as a Sentinel (kombu keeps only those
        # whose scheme is sentinel://) and Sentinel clients that do not retry.
        if not self.master_name:
            raise ConfigError(
                "JOB_QUEUE_URL: a Sentinel URL needs a master name (?master_name=... or "
                "the REDIS_SENTINEL_MASTER setting)",
                field="JOB_QUEUE_URL",
            )
        params = self._connparams(asynchronous)
        params.pop("host", None)
        params.pop("port", None)
        # redis-py retries a refused connection 10 times with backoff (about 4 s):
        # a Sentinel that is down (often with the master, on the same host) would
        # cost that on every lookup, though discover_master just asks the next one.
        sentinel_kwargs = {"retry": Retry(NoBackoff(), 0), **(self.sentinel_kwargs or {})}
        sentinels = self.sentinels()
        manager = RecordingSentinel(
            sentinels,
            topology=_topologies.get(_group(self.master_name, sentinels)),
            min_other_sentinels=self.min_other_sentinels,
            sentinel_kwargs=sentinel_kwargs,
            **params,
        )
        # Kept where kombu's _disconnect_pools closes the Sentinel connections.
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        credentials = {key: params[key] for key in ("username", "password") if key in params}
        return manager.master_for(self.master_name, redis.Redis, **credentials).connection_pool


class SentinelTransport(Transport):
    """Our Redis transport with :class:`SentinelChannel`: select it with ``broker_transport``."""

    Channel = SentinelChannel
    default_port = SENTINEL_PORT  # type: ignore[assignment]

    def establish_connection(self) -> Any:
        """Connect to the master, waiting out a fail-over in progress.

        While the Sentinels still name the master that just died (or, mid
        fail-over, no master at all), connecting fails at once; asking again every
        :data:`FAILOVER_POLL` seconds reaches the promoted replica as soon as the
        Sentinels name it, for up to ``failover_wait`` seconds (transport option).
        Beyond that the error goes to kombu, whose retries call this again.
        """
        client: Any = self.client  # the kombu Connection
        options = client.transport_options
        wait = float(options.get("failover_wait", DEFAULT_FAILOVER_WAIT))
        deadline = monotonic() + wait
        while True:
            try:
                return super().establish_connection()
            except NOT_FAILOVER:
                raise
            except self.connection_errors as exc:
                if monotonic() + FAILOVER_POLL > deadline:
                    raise
                logger.debug("no master to connect to yet (%s); asking the Sentinels again", exc)
                sleep(FAILOVER_POLL)


#: The same class under a second name, shown as ``sentinels`` (TLS) in URLs.
TLSSentinelTransport = SentinelTransport
