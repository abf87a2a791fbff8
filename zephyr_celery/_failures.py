"""Jobs that exhausted their retries, kept in Redis for inspection and re-enqueueing.

Each failure is one JSON string under ``zephyr:jobs:failed:<id>`` with a time to
live, indexed by a sorted set scored by failure time so the newest list first.
Entries in the index whose record expired are pruned on every write and skipped
on read. The store lives on the result backend's Redis, whatever the broker; on a
Sentinel URL its client asks the Sentinels for the master and follows a fail-over.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from zephyr_core._redis_clients import sync_client
from zephyr_core._topology import RedisTopology, parse_redis_url

INDEX_KEY = "zephyr:jobs:failed"
RECORD_PREFIX = "zephyr:jobs:failed:"


@dataclass(frozen=True)
class FailureRecord:
    """One job that failed for good.

    Attributes:
        id: The job id (the same id its :class:`~zephyr_celery.JobHandle` holds).
        name: The job's name (its Celery task name).
        args: Positional arguments, as they travelled (JSON).
        kwargs: Keyword arguments, as they travelled (JSON).
        exc_type: Name of the exception class the last attempt raised.
        message: That exception's message.
        traceback: The last attempt's traceback, as printed.
        attempts: How many times the job ran (1 + retries).
        failed_at: When the last attempt failed, seconds since the epoch (UTC).
        queue: The queue the job was sent to, when known.
    """

    id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    exc_type: str
    message: str
    traceback: str
    attempts: int
    failed_at: float
    queue: str | None = field(default=None)

    def to_json(self) -> str:
        """The record as the JSON stored in Redis."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FailureRecord:
        """Read a record written by :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
            exc_type=str(data.get("exc_type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
            attempts=int(data.get("attempts", 1)),
            failed_at=float(data.get("failed_at", 0.0)),
            queue=data.get("queue"),
        )


class FailureStore:
    """Failed jobs in Redis: record, list, get and remove.

    Args:
        url: The Redis holding the store (the result backend's URL): one server or
            a Sentinel-managed master.
        retention: Seconds a record is kept (7 days by default).
        topology: What ``url`` points at, when settings complete it (a Sentinel
            master name from REDIS_SENTINEL_MASTER); parsed from ``url`` otherwise.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: int = 7 * 24 * 3600,
        topology: RedisTopology | None = None,
    ) -> None:
        if retention <= 0:
            raise ValueError(f"retention={retention!r}: must be a positive number of seconds")
        self.url = url
        self.retention = int(retention)
        self.topology = topology
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            topology = self.topology or parse_redis_url(self.url, allow_cluster=False)
            client = sync_client(topology, socket_timeout=10)
            assert isinstance(client, redis.Redis)  # a Cluster URL is refused above
            self._client = client
        return self._client

    def close(self) -> None:
        """Close the store's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def record(self, failure: FailureRecord) -> None:
        """Store ``failure`` (replacing an earlier record of the same id)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(RECORD_PREFIX + failure.id, failure.to_json(), ex=self.retention)
            pipe.zadd(INDEX_KEY, {failure.id: failure.failed_at})
            pipe.zremrangebyscore(INDEX_KEY, "-inf", time.time() - self.retention)
            pipe.expire(INDEX_KEY, self.retention)
            pipe.execute()

    def get(self, job_id: str) -> FailureRecord | None:
        """The record of ``job_id``, or None when there is none (or it expired)."""
        raw = self.client.get(RECORD_PREFIX + job_id)
        return None if raw is None else FailureRecord.from_json(raw)

    def recent(self, limit: int = 50) -> list[FailureRecord]:
        """The most recent failures, newest first."""
        if limit <= 0:
            return []
        ids = self.client.zrevrange(INDEX_KEY, 0, limit - 1)
        if not ids:
            return []
        raws = self.client.mget([RECORD_PREFIX + _text(i) for i in ids])
        return [FailureRecord.from_json(raw) for raw in raws if raw is not None]

    def count(self) -> int:
        """How many failures are kept (expired ones may count until the next write)."""
        return int(self.client.zcount(INDEX_KEY, time.time() - self.retention, "+inf"))

    def remove(self, job_id: str) -> bool:
        """Forget ``job_id``'s failure; True if there was one."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(RECORD_PREFIX + job_id)
            pipe.zrem(INDEX_KEY, job_id)
            deleted, _ = pipe.execute()
        return bool(deleted)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def failure_store(app: Any = None) -> FailureStore:
    """The failure store of ``app`` (the process-wide app by default)."""
    from zephyr_celery._app import DEFAULT_FAILURE_RETENTION, app_settings, get_app

    app = app or get_app()
    retention = app.conf.get("zephyr_failure_retention") or DEFAULT_FAILURE_RETENTION
    url = str(app.conf.result_backend)
    try:
        topology: RedisTopology | None = app_settings(app).redis_topology(url)
    except ValueError:
        topology = None  # not a Redis URL: the store's first command says so
    return FailureStore(url, retention=int(retention), topology=topology)
