"""Celery beat on a Redis-backed schedule (celery-redbeat), tuned for quick fail-over.

The schedule and its "last run" times live in Redis, so beat writes no local file (no
``celerybeat-schedule``, no pidfile) and runs on a read-only root filesystem. Beat holds
a Redis lock while it runs: a second instance waits on that lock instead of firing every
job a second time, and takes over within ``lock_timeout`` seconds when the first dies
(redbeat's default of five times beat's 300 s loop means 25 minutes).

On a Sentinel URL redbeat asks the Sentinels for the master (its ``redis-sentinel``
mode, configured from the URL here), and its client follows a fail-over. redbeat itself
does not ride one out: a tick that meets the dead master raises, which ends beat, and a
lock whose key the fail-over lost (written to the old master, never replicated) cannot
be extended. :class:`BeatScheduler` retries such a tick a second later instead, and
takes a lost lock again, waiting for it like a standby, before it sends anything.

The other addition to redbeat is a crontab that keeps its own time zone through Redis:
redbeat stores a crontab's five fields only, so ``@scheduler.cron(..., tz=...)`` would
otherwise run in the app's time zone after the first save.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import redis
from celery.schedules import crontab
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, get_redis
from redis.exceptions import LockNotOwnedError

from zephyr_core import Settings
from zephyr_core._redis_clients import sentinel_kwargs
from zephyr_core._topology import RedisTopology

#: Beat wakes at least this often (seconds): also how often it renews its lock.
DEFAULT_MAX_INTERVAL = 5.0
#: A beat that stops renewing its lock loses it after this many seconds.
DEFAULT_LOCK_TIMEOUT = 25
KEY_PREFIX = "zephyr:beat:"
SCHEDULER = "zephyr_celery._beat:BeatScheduler"
#: Seconds before a tick that could not reach Redis is tried again.
UNREACHABLE_RETRY = 1.0
#: Seconds redbeat's Redis client waits on a socket.
SOCKET_TIMEOUT = 10

#: What a tick meets while Redis restarts or Sentinel fails over (a refused connection,
#: no master named yet, a demoted master's READONLY: redis-py makes them all these).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)

logger = logging.getLogger("zephyr_celery.beat")


def beat_settings(
    settings: Settings,
    *,
    max_interval: float = DEFAULT_MAX_INTERVAL,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Celery settings that run beat on redbeat with the schedule in the result Redis.

    Args:
        settings: Where the Redis is (JOB_RESULT_URL, which defaults to JOB_QUEUE_URL
            when the broker is Redis).
        max_interval: Longest sleep between two beat ticks, in seconds.
        lock_timeout: Seconds before a silent beat's lock expires and a standby
            takes over; must be at least twice ``max_interval``.

    Raises:
        ValueError: ``lock_timeout`` would expire between two ticks of a live beat.
    """
    if max_interval <= 0:
        raise ValueError(f"max_interval must be positive, got {max_interval:g}")
    if lock_timeout < 2 * max_interval:
        raise ValueError(
            f"lock_timeout ({lock_timeout}s) must be at least twice max_interval "
            f"({max_interval:g}s), or a live beat could lose its lock between two ticks"
        )
    url = settings.job_result_url
    config: dict[str, Any] = {
        "beat_scheduler": SCHEDULER,
        "beat_max_loop_interval": max_interval,
        "redbeat_redis_url": url,
        # Set explicitly: redbeat's fallback to broker_transport_options is deprecated.
        "redbeat_redis_options": {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": 10},
        "redbeat_key_prefix": KEY_PREFIX,
        "redbeat_lock_timeout": lock_timeout,
    }
    topology = settings.redis_topology(url)
    if topology.kind == "sentinel":
        config.update(redbeat_sentinel_settings(topology))
    return config


def redbeat_sentinel_settings(topology: RedisTopology) -> dict[str, Any]:
    """redbeat's own Sentinel configuration for ``topology``.

    redbeat takes the Sentinels, the master name (``service_name``), Redis's password
    and the database from ``redbeat_redis_options``, and reads its URL only to pick the
    mode (a ``redis-sentinel`` scheme) and to show it in beat's banner, so the URL
    here names the master group, with no password. TLS options for the master go in
    ``redbeat_redis_use_ssl``; the Sentinels' own password and TLS in ``sentinel_kwargs``.
    """
    name = str(topology.master_name)
    options: dict[str, Any] = {
        "sentinels": [[host, port] for host, port in topology.nodes],
        "service_name": name,
        "db": topology.db,
        "socket_timeout": SOCKET_TIMEOUT,
        "sentinel_kwargs": sentinel_kwargs(topology, {}),
    }
    if topology.password is not None:
        options["password"] = topology.password
    if topology.username is not None:
        options["username"] = topology.username
    config: dict[str, Any] = {
        "redbeat_redis_url": f"redis-sentinel://{quote(name, safe='')}/{topology.db}",
        "redbeat_redis_options": options,
    }
    if topology.tls:
        config["redbeat_redis_use_ssl"] = dict(topology.ssl_options)
    return config


class ZonedCrontab(crontab):  # type: ignore[misc]  # celery ships no type hints
    """A crontab evaluated in its own time zone rather than the app's."""

    def __init__(self, *args: Any, tz: ZoneInfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = tz  # BaseSchedule.tz is a settable cached property

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} {self.tz.key}>"


class _Encoder(RedBeatJSONEncoder):  # type: ignore[misc]
    def default(self, obj: Any) -> Any:
        if isinstance(obj, ZonedCrontab):
            encoded: dict[str, Any] = super().default(obj)
            return {**encoded, "__type__": "zephyr_crontab", "tz": obj.tz.key}
        return super().default(obj)


class _Decoder(RedBeatJSONDecoder):  # type: ignore[misc]
    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == "zephyr_crontab":
            fields = {k: v for k, v in d.items() if k not in ("__type__", "tz")}
            return ZonedCrontab(tz=ZoneInfo(d["tz"]), **fields)
        return super().dict_to_object(d)


class BeatEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """A redbeat entry whose stored definition keeps a crontab's time zone."""

    @staticmethod
    def decode_definition(definition: str) -> Any:
        return json.loads(definition, cls=_Decoder)

    def save(self) -> BeatEntry:
        definition = {
            "name": self.name,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "schedule": self.schedule,
            "enabled": self.enabled,
        }
        meta = {"last_run_at": self.last_run_at}
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", json.dumps(definition, cls=_Encoder))
            pipe.hsetnx(self.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self


class BeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler with :class:`BeatEntry` (time-zone-aware crontabs), riding
    out a Redis restart or a Sentinel fail-over instead of ending beat."""

    Entry = BeatEntry

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval: float = super().tick(*args, **kwargs)
        except LockNotOwnedError:
            # The key is gone (lost in a fail-over, or expired in a long outage), and
            # a standby may hold it now: only its holder may send.
            logger.warning("beat: the lock was lost; waiting to take it again")
            self._take_lock_again()
            logger.info("beat: Acquired lock again")
            return 0.0
        except UNREACHABLE as exc:
            logger.warning("beat: Redis unreachable (%s); next try in %gs", exc, UNREACHABLE_RETRY)
            return UNREACHABLE_RETRY
        return interval

    def _take_lock_again(self) -> None:
        while True:
            try:
                self.lock.acquire(blocking=True)  # every max_interval, like a standby
                return
            except UNREACHABLE:
                time.sleep(UNREACHABLE_RETRY)
