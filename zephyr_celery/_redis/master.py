"""Where our lean Redis connections go: one server, or the server Sentinel names master now.

The enqueue fast path (:mod:`.publisher`) and the result waiter (:mod:`.waiter`)
speak RESP on connections of their own (:mod:`.wire`). For a plain ``redis://`` URL
such a connection always goes to the one server; for a ``sentinel://`` URL each new
connection first asks the Sentinels which server is master now
(:func:`zephyr_core._redis_clients.resolve_master`), so a connection made after a
fail-over reaches the promoted replica. What to do when a connection is lost or a
reply says ``-READONLY`` (a master demoted to replica) is the caller's: reconnect,
which resolves again.

A URL that asks for more than an address, a database and credentials (TLS, socket
options) has no :class:`Target`: its callers keep redis-py's own clients, which
follow Sentinel fail-overs through ``Sentinel.master_for``.
"""

from __future__ import annotations

from typing import Any

from zephyr_celery._redis import wire as _wire
from zephyr_core._redis_clients import resolve_master
from zephyr_core._topology import RedisTopology, parse_redis_url

#: Seconds to wait for a Sentinel's answer before asking the next one.
RESOLVE_TIMEOUT = 1.0


class Target:
    """The server a lean connection is made to: fixed, or the current Sentinel master."""

    __slots__ = ("_params", "topology")

    def __init__(self, params: dict[str, Any], topology: RedisTopology | None) -> None:
        self._params = params
        #: The Sentinel topology whose master this follows (``None``: one fixed server).
        self.topology = topology

    @property
    def follows_master(self) -> bool:
        """Whether the server can change (Sentinel): reconnecting may reach another."""
        return self.topology is not None

    async def params(self) -> dict[str, Any]:
        """Where to connect now (:func:`.wire.connect`'s parameters).

        Raises:
            redis.exceptions.ConnectionError: No Sentinel answered with a master
                (``MasterNotFoundError`` is one).
        """
        if self.topology is None:
            return self._params
        host, port = await resolve_master(self.topology, timeout=RESOLVE_TIMEOUT)
        return {**self._params, "host": host, "port": port}


def lean_target(topology: RedisTopology | None) -> Target | None:
    """The lean connections' target for ``topology``; ``None`` when only redis-py fits."""
    if topology is None:
        return None
    if topology.kind == "single":
        params = _wire.plain_params(topology.url)
        return None if params is None else Target(params, None)
    if topology.kind == "sentinel" and not topology.tls:
        params = {"db": topology.db}
        if topology.password is not None:
            params["password"] = topology.password
            if topology.username is not None:
                params["username"] = topology.username
        return Target(params, topology)
    return None  # TLS, or a Cluster (not a broker or result backend)


def app_topology(app: Any, url: str, options: dict[str, Any] | None = None) -> RedisTopology | None:
    """What ``url`` (the app's broker or result URL) points at; ``None`` if not Redis.

    The master name and the Sentinels' password come from the URL, else from
    kombu's/Celery's transport ``options`` (``master_name``, ``sentinel_kwargs``),
    else from the app's settings (REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD).
    """
    from zephyr_celery._app import app_settings  # _app imports this package

    settings = app_settings(app)
    options = options or {}
    secret = settings.REDIS_SENTINEL_PASSWORD
    sentinel_kwargs = options.get("sentinel_kwargs") or {}
    try:
        return parse_redis_url(
            url,
            master_name=options.get("master_name") or settings.REDIS_SENTINEL_MASTER,
            sentinel_password=sentinel_kwargs.get("password")
            or (secret.get_secret_value() if secret is not None else None),
        )
    except ValueError:
        return None
