"""JOB_ENQUEUE_REPLICAS: an enqueue returns once N replicas have the message (Redis WAIT).

Redis replicates asynchronously: a master that acknowledged an ``LPUSH`` and died
before its replicas had it takes the job with it, and the replica promoted in its
place never saw it. With ``JOB_ENQUEUE_REPLICAS=N`` every job message is followed,
on the same connection, by ``WAIT N timeout_ms`` (JOB_ENQUEUE_REPLICAS_TIMEOUT), and
``delay()`` returns only once N replicas confirmed; otherwise it raises
:class:`NotReplicatedError`, an :class:`~zephyr_celery.EnqueueError`. WAIT counts the
replicas that have everything this connection wrote, so it must follow the message on
its connection: the fast path sends it after the messages of each loop iteration
(:mod:`.publisher`: messages sent together share one); Celery's own path
(``delay_sync``, the publisher thread) lets Celery build the commands, captures them
and sends them with the WAIT in one pipeline on the broker channel's client
(:func:`publish`).

A shortfall does not mean the job is lost: it IS queued on the master, and runs
unless the master dies before a replica has it. Sending it again (same job id) may
run it twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from zephyr_celery._exceptions import EnqueueError
from zephyr_core import ConfigError, mask_url

# What a send retries under Celery's publish retry policy. (On Sentinel, redis-py's
# SentinelManagedConnection turns a READONLY reply into a ConnectionError and asks for
# the master again; on one server a READONLY reply is final, as on the fast path.)
_RETRIED = (RedisConnectionError, RedisTimeoutError, OSError)


class ReplicaShortfall(Exception):
    """Fewer replicas than asked confirmed a message (becomes NotReplicatedError)."""

    def __init__(self, confirmed: int, wanted: int, timeout: float) -> None:
        super().__init__(f"{confirmed} of {wanted} replicas confirmed within {timeout:g}s")
        self.confirmed = confirmed
        self.wanted = wanted
        self.timeout = timeout


class NotReplicatedError(EnqueueError):
    """The job IS queued on the broker's master, but fewer replicas than
    JOB_ENQUEUE_REPLICAS confirmed it within JOB_ENQUEUE_REPLICAS_TIMEOUT.

    It will run, unless the master dies before a replica has the message: then the
    fail-over loses it. ``job_id`` is the job's: check its status, or enqueue it again
    with the same id if running it twice is harmless.

    Attributes:
        confirmed: Replicas that confirmed.
        wanted: JOB_ENQUEUE_REPLICAS.
    """

    def __init__(
        self,
        shortfall: ReplicaShortfall,
        *,
        job_name: str,
        broker_url: str,
        job_id: str | None,
    ) -> None:
        shown = mask_url(broker_url)
        super().__init__(
            f"job {job_name} (id {job_id}) IS queued on the broker's master {shown}, but "
            f"only {shortfall.confirmed} of JOB_ENQUEUE_REPLICAS={shortfall.wanted} "
            f"replicas confirmed it within JOB_ENQUEUE_REPLICAS_TIMEOUT="
            f"{shortfall.timeout:g}s: it may be lost if the master dies now (a fail-over "
            "promotes a replica that never had it). It may also run: check its status "
            "before sending it again",
            job_name=job_name,
            broker_url=shown,
            job_id=job_id,
        )
        self.confirmed = shortfall.confirmed
        self.wanted = shortfall.wanted


@dataclass(frozen=True, slots=True)
class Replicas:
    """How many replicas must confirm each message, and how long WAIT may take."""

    count: int
    timeout: float

    def check(self, confirmed: int | None) -> None:
        """Raise :class:`ReplicaShortfall` when ``confirmed`` (WAIT's reply) is too few."""
        if self.count and (confirmed or 0) < self.count:
            raise ReplicaShortfall(int(confirmed or 0), self.count, self.timeout)


NONE = Replicas(0, 0.0)


def for_app(app: Any) -> Replicas:
    """JOB_ENQUEUE_REPLICAS of ``app``'s settings (0: no WAIT).

    Raises:
        ConfigError: It is set while the broker is not Redis (RabbitMQ confirms
            publishes its own way).
    """
    from zephyr_celery._app import app_settings  # _app imports this package

    settings = app_settings(app)
    count = int(getattr(settings, "JOB_ENQUEUE_REPLICAS", 0) or 0)
    if not count:
        return NONE
    url = str(app.conf.broker_url or "")
    if getattr(settings, "JOB_QUEUE_BACKEND", "redis") != "redis" or url.startswith("amqp"):
        raise ConfigError(
            f"JOB_ENQUEUE_REPLICAS={count}: replicas are counted with Redis WAIT, and the "
            f"broker {mask_url(url)!r} is not Redis; set JOB_ENQUEUE_REPLICAS=0 (RabbitMQ "
            "confirms each publish itself)",
            field="JOB_ENQUEUE_REPLICAS",
        )
    timeout = float(getattr(settings, "JOB_ENQUEUE_REPLICAS_TIMEOUT", 1.0))
    return Replicas(count, timeout)


def wait_command(replicas: Replicas) -> bytes:
    """``WAIT N timeout_ms`` packed, or nothing when no replica is asked for."""
    if not replicas.count:
        return b""
    from zephyr_celery._redis.wire import pack

    return pack([("WAIT", (replicas.count, _millis(replicas.timeout)))])


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))  # WAIT 0 would wait forever


def publish(app: Any, producer: Any, messages: Sequence[tuple[str, Any, dict[str, Any]]]) -> None:
    """Publish Celery-built ``messages`` ((name, message, options) each) with a WAIT.

    Celery's ``send_task_message`` runs for each (routing, signals, events) with its
    Redis commands captured; they go out in one pipeline ending with WAIT, on the
    client of ``producer``'s channel (kombu's; on Sentinel it follows the master),
    retried on a lost connection under Celery's publish retry policy.

    Raises:
        ReplicaShortfall: Every message is queued, but too few replicas confirmed.
    """
    from zephyr_celery._redis.publisher import capture  # publisher imports this module

    replicas = for_app(app)
    commands = [
        command
        for name, message, options in messages
        for command in capture(app, producer, name, message, options)
    ]
    policy = dict(app.conf.task_publish_retry_policy or {})
    retries = int(policy.get("max_retries") or 0) if app.conf.task_publish_retry else 0
    interval = float(policy.get("interval_start", 0) or 0)
    step = float(policy.get("interval_step", 0.2) or 0)
    ceiling = float(policy.get("interval_max", 1) or 0)
    failed = 0
    while True:
        try:
            replies = _send(producer.channel.client, commands, replicas)
            break
        except _RETRIED:
            failed += 1
            if failed > retries:
                raise
            time.sleep(interval)
            interval = min(interval + step, ceiling)
    replicas.check(replies[-1])


def _send(client: Any, commands: list[tuple[str, tuple[Any, ...]]], replicas: Replicas) -> Any:
    with client.pipeline(transaction=False) as pipe:
        for name, args in commands:
            getattr(pipe, name)(*args)
        pipe.execute_command("WAIT", replicas.count, _millis(replicas.timeout))
        return pipe.execute()
