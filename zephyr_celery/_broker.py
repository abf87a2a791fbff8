"""Broker settings for the Celery app: which transport, and how it rides out failures.

Redis URLs (``redis://``, ``rediss://``) use :mod:`zephyr_celery._redis.transport`,
kombu's Redis transport with an atomic pop (see there); ``amqp://`` uses kombu's
RabbitMQ transport with publisher confirms.

What a worker does with its running jobs when the broker connection drops depends
on the broker. RabbitMQ hands a dropped connection's unacknowledged jobs to another
consumer at once and cannot take their acknowledgement on a new connection: Celery
terminates them (``worker_cancel_long_running_tasks_on_connection_loss``), so they
do not run twice at the same time. On Redis our transport keeps them: they finish,
their acknowledgements reach Redis once it is back, and the jobs the worker had
prefetched go back to their queue at once (see :mod:`zephyr_celery._redis.stranded`).

Sentinel URLs (``sentinel://``, ``sentinels://`` over TLS) use the same transport on
the master the Sentinels name (:mod:`zephyr_celery._redis.sentinel_transport`): a
worker follows a fail-over to the promoted replica without a restart. The master
name, the Sentinels' own password and TLS options travel as kombu transport options
(``master_name``, ``sentinel_kwargs``), Redis's password in the URL.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from kombu import connection as kombu_connection
from kombu.transport import TRANSPORT_ALIASES

from zephyr_core import Settings
from zephyr_core._redis_clients import sentinel_kwargs
from zephyr_core._topology import RedisTopology

#: ``broker_transport`` for Redis: the class kombu imports instead of its own.
REDIS_TRANSPORT = "zephyr_celery._redis.transport:Transport"
REDISS_TRANSPORT = "zephyr_celery._redis.transport:TLSTransport"  # the same class

#: ``broker_transport`` for Sentinel: our transport on the master the Sentinels name.
SENTINEL_TRANSPORT = "zephyr_celery._redis.sentinel_transport:SentinelTransport"
SENTINELS_TRANSPORT = "zephyr_celery._redis.sentinel_transport:TLSSentinelTransport"

#: The same as a kombu alias, for URLs that must name their transport themselves
#: (``zephyr-redis+socket:///path``: kombu picks the transport from such a prefix).
REDIS_ALIAS = "zephyr-redis"
TRANSPORT_ALIASES.setdefault(REDIS_ALIAS, REDIS_TRANSPORT)
#: The scheme of each Sentinel in the broker URL kombu reads: kombu may switch to any
#: of them between connection attempts, and takes the transport from its scheme (a
#: ``sentinel://`` one would be kombu's own transport).
SENTINEL_ALIAS = "zephyr-sentinel"
SENTINELS_ALIAS = "zephyr-sentinels"
TRANSPORT_ALIASES.setdefault(SENTINEL_ALIAS, SENTINEL_TRANSPORT)
TRANSPORT_ALIASES.setdefault(SENTINELS_ALIAS, SENTINELS_TRANSPORT)

# kombu writes a connection's URL (Celery's banner and logs, Flower's broker page)
# with the transport's name as its scheme: show redis:// and rediss:// again.
kombu_connection.resolve_aliases.setdefault(REDIS_TRANSPORT, "redis")
kombu_connection.resolve_aliases.setdefault(REDISS_TRANSPORT, "rediss")
for _name, _shown in (
    (SENTINEL_TRANSPORT, "sentinel"),
    (SENTINEL_ALIAS, "sentinel"),
    (SENTINELS_TRANSPORT, "sentinels"),
    (SENTINELS_ALIAS, "sentinels"),
):
    kombu_connection.resolve_aliases.setdefault(_name, _shown)

#: Seconds to connect to a Sentinel-managed master: a dead master's address may not
#: refuse at once (a vanished host), and each attempt should move on to asking the
#: Sentinels again quickly.
SENTINEL_CONNECT_TIMEOUT = 3

#: Publishing retries long enough to ride out a broker restart of a few seconds
#: (0 + 0.5 + 1 + 1.5 + 2 * 8 = 19 s), instead of Celery's 3 retries within 0.6 s.
PUBLISH_RETRY_POLICY = {
    "max_retries": 12,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}


def broker_settings(settings: Settings) -> dict[str, Any]:
    """Celery configuration for the broker named by ``settings``.

    Args:
        settings: JOB_QUEUE_BACKEND, JOB_QUEUE_URL and JOB_VISIBILITY_TIMEOUT are read.

    Returns:
        Celery settings by their lowercase names: ``broker_url``, ``broker_transport``
        and ``broker_transport_options`` (with ``visibility_timeout``), plus the
        connection and publishing retries that let producers and workers reconnect
        after a broker restart.
    """
    url = settings.JOB_QUEUE_URL
    config: dict[str, Any] = {
        "broker_url": url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker waits for its broker forever
        "task_publish_retry": True,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
        "worker_cancel_long_running_tasks_on_connection_loss": True,
    }
    if settings.JOB_QUEUE_BACKEND == "rabbitmq":
        # The broker confirms each publish: a message is either queued or an error.
        config["broker_transport_options"] = {"confirm_publish": True}
        return config
    # Running jobs finish through a Redis restart; the transport forwards their acks.
    config["worker_cancel_long_running_tasks_on_connection_loss"] = False
    config["broker_transport_options"] = {
        "visibility_timeout": settings.JOB_VISIBILITY_TIMEOUT,
        # Bounded waits on a dead connection; kombu's own health checks do the rest.
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
    }
    topology = settings.redis_topology(url)
    if topology.kind == "sentinel":
        from zephyr_celery._redis.sentinel_transport import register_topology

        register_topology(topology)  # its fail-overs are counted where a worker sees them
        config.update(sentinel_settings(topology, config["broker_transport_options"]))
        return config
    config["broker_url"] = kombu_redis_url(url)
    tls = urlsplit(url).scheme == "rediss"
    config["broker_transport"] = REDISS_TRANSPORT if tls else REDIS_TRANSPORT
    if use_ssl := redis_ssl_options(url):
        config["broker_use_ssl"] = use_ssl
    return config


def sentinel_settings(topology: RedisTopology, options: dict[str, Any]) -> dict[str, Any]:
    """Celery's broker settings for a Sentinel topology, on top of transport ``options``.

    Returns:
        ``broker_url`` (each Sentinel with Redis's credentials and the database, in
        our scheme), ``broker_transport``, ``broker_transport_options`` (``options``
        plus ``master_name`` and ``sentinel_kwargs``: the Sentinels' own credentials,
        timeouts and TLS) and, over TLS, ``broker_use_ssl`` (certificates verified
        unless the URL says otherwise).
    """
    scheme = SENTINELS_ALIAS if topology.tls else SENTINEL_ALIAS
    auth = ""
    if topology.password is not None:
        auth = f"{quote(topology.username or '', safe='')}:{quote(topology.password, safe='')}@"
    elif topology.username:
        auth = f"{quote(topology.username, safe='')}@"
    url = ";".join(
        f"{scheme}://{auth}{_host(host)}:{port}/{topology.db}" for host, port in topology.nodes
    )
    config: dict[str, Any] = {
        "broker_url": url,
        "broker_transport": SENTINELS_TRANSPORT if topology.tls else SENTINEL_TRANSPORT,
        "broker_transport_options": {
            **options,
            "socket_connect_timeout": SENTINEL_CONNECT_TIMEOUT,
            "master_name": topology.master_name,
            # Short timeouts (a Sentinel that does not answer is skipped for the
            # next), their own password, TLS like the servers.
            "sentinel_kwargs": sentinel_kwargs(topology, {}),
        },
    }
    if topology.tls:
        config["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, **topology.ssl_options}
    return config


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address


def kombu_redis_url(url: str) -> str:
    """``url`` as kombu reads it: ``unix:///path?db=N`` becomes a socket URL."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = parse_qs(parts.query)
    db = query.pop("db", ["0"])[0]
    rest = {name: values[-1] for name, values in query.items()}
    return f"{REDIS_ALIAS}+socket://{parts.path}?" + urlencode({"virtual_host": db, **rest})


def redis_ssl_options(url: str) -> dict[str, Any] | None:
    """TLS options for a ``rediss://`` URL without ``ssl_*`` query parameters.

    kombu turns a bare ``rediss://`` scheme into TLS only when the scheme also picks
    the transport; with ``broker_transport`` set, TLS is asked for here. Certificates
    are verified (kombu's own default for a bare ``rediss://`` is not to); the URL's
    ``ssl_cert_reqs``/``ssl_ca_certs``/... parameters, when given, win.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    if any(name.startswith("ssl_") for name in parse_qs(parts.query)):
        return None  # kombu parses them from the URL itself
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
