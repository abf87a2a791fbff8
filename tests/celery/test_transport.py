"""The Redis transport: the atomic pop, kombu's semantics kept, and how it is selected.

Everything runs on real Redis servers (the session one, and private ones with a
password, TLS or a unix socket); "killed" consumers are real processes SIGKILLed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from tests.servers import (
    free_port,
    need,
    port_open,
    redis_binary,
    self_signed_certificate,
    wait_until,
)
from zephyr_celery import create_app
from zephyr_celery._broker import (
    REDIS_TRANSPORT,
    REDISS_TRANSPORT,
    broker_settings,
    kombu_redis_url,
)
from zephyr_celery._redis.transport import (
    MAX_POP_BATCH,
    POP_SCRIPT,
    Transport,
    _here,
    sweep_interval,
)
from zephyr_core import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the session Redis, to look at what the transport wrote."""
    plain = redis.Redis.from_url(redis_url)
    yield plain
    plain.close()


def connection(url: str, transport: Any = Transport, **options: Any) -> kombu.Connection:
    return kombu.Connection(url, transport=transport, transport_options=options)


def publish(conn: kombu.Connection, queue: kombu.Queue, body: Any, **kwargs: Any) -> None:
    conn.Producer().publish(
        body, routing_key=queue.name, declare=[queue], serializer="json", **kwargs
    )


def drain(
    conn: kombu.Connection,
    queues: list[kombu.Queue],
    count: int,
    prefetch: int | None = None,
    timeout: float = 10,
) -> list[Any]:
    """Consume ``count`` messages through the event-driven path (``timeout`` s at
    most); ack each."""
    bodies: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        bodies.append(body)
        message.ack()

    with conn.Consumer(queues, callbacks=[on_message]) as consumer:
        if prefetch is not None:
            consumer.qos(prefetch_count=prefetch)
        deadline = time.monotonic() + timeout
        while len(bodies) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
    return bodies


def test_a_delivered_message_is_recorded_as_unacked_until_acked(
    redis_url: str, client: redis.Redis
) -> None:
    queue = kombu.Queue("atomic")
    seen: list[tuple[bool, bool, int]] = []

    def on_message(body: Any, message: Any) -> None:
        tag = message.delivery_tag
        seen.append(
            (client.hexists("unacked", tag), client.zscore("unacked_index", tag) is not None,
             client.llen("atomic"))
        )  # fmt: skip
        message.ack()

    with connection(redis_url) as conn:
        publish(conn, queue, {"n": 1})
        with conn.Consumer(queue, callbacks=[on_message]):
            conn.drain_events(timeout=5)
    assert seen == [(True, True, 0)]
    assert client.hlen("unacked") == 0
    assert client.zcard("unacked_index") == 0


#: A consumer that dies by SIGKILL: either right after asking Redis for a message
#: (the reply never read: kombu's BRPOP loses the message here) or in the callback,
#: before its ack.
DYING_CONSUMER = """
import os, signal, sys, time
import kombu, redis
from zephyr_celery._redis.transport import Transport

url, moment = sys.argv[1], sys.argv[2]
conn = kombu.Connection(url, transport=Transport)
queue = kombu.Queue("doomed")
def on_message(body, message):
    os.kill(os.getpid(), signal.SIGKILL)
consumer = conn.Consumer(queue, callbacks=[on_message])
consumer.consume()
channel = consumer.channel
if moment == "before-read":
    conn.transport.cycle.on_poll_start()  # sends the pop, as the event loop does
    watcher = redis.Redis.from_url(url)
    while watcher.llen("doomed"):  # Redis has run it: the reply waits in our socket
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
conn.drain_events(timeout=10)
"""


@pytest.mark.parametrize("moment", ["before-read", "before-ack"])
def test_a_consumer_killed_holding_a_message_gets_it_restored(
    redis_url: str, tmp_path: Path, moment: str, client: redis.Redis
) -> None:
    queue = kombu.Queue("doomed")
    with connection(redis_url) as conn:
        publish(conn, queue, {"job": 7})
    script = tmp_path / "dying.py"
    script.write_text(DYING_CONSUMER)
    done = subprocess.run(
        [sys.executable, str(script), redis_url, moment],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    # Taken from the queue, yet held in the unacked record, not in a dead socket.
    assert client.llen("doomed") == 0
    assert client.hlen("unacked") == 1
    # A live consumer restores it once the visibility timeout has passed.
    with connection(redis_url, visibility_timeout=1) as conn:
        channel = conn.default_channel
        wait_until(
            lambda: bool(channel.qos.restore_visible() or client.llen("doomed")),
            10,
            "the restore",
        )
        message = kombu.Queue("doomed", channel=channel).get()
    assert message is not None and message.payload == {"job": 7}
    assert message.headers.get("redelivered") is True
    message.ack()
    assert client.hlen("unacked") == 0


def test_delivery_order_is_kombus(redis_url: str, client: redis.Redis) -> None:
    """One message at a time (prefetch 1): priorities first, then queues round-robin,
    the same order as kombu's BRPOP."""
    queues = [kombu.Queue("alpha"), kombu.Queue("beta")]
    orders = []
    for transport in (kombu_redis.Transport, Transport):
        client.flushdb()
        with connection(redis_url, transport) as conn:
            for n in range(12):
                publish(conn, queues[n % 3 == 0], {"n": n}, priority=(n * 7) % 10)
            orders.append([body["n"] for body in drain(conn, queues, 12, prefetch=1)])
    kombu_order, our_order = orders
    assert sorted(our_order) == list(range(12))
    assert our_order == kombu_order


def test_a_pop_takes_what_the_prefetch_allows_priorities_first(
    redis_url: str, client: redis.Redis
) -> None:
    """With room to prefetch, one round trip takes several messages, by priority."""
    queues = [kombu.Queue("alpha"), kombu.Queue("beta")]
    client.config_resetstat()
    with connection(redis_url) as conn:
        for n in range(24):
            publish(conn, queues[n % 3 == 0], {"n": n}, priority=(n * 7) % 10)
        bodies = drain(conn, queues, 24, prefetch=MAX_POP_BATCH)
    assert sorted(body["n"] for body in bodies) == list(range(24))
    priorities = [(body["n"] * 7) % 10 for body in bodies]
    # kombu files a priority under the step at or below it (0, 3, 6, 9) and takes
    # the lower steps first.
    steps = [max(step for step in (0, 3, 6, 9) if step <= p) for p in priorities]
    assert steps == sorted(steps)
    stats = client.info("commandstats")
    pops = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))
    assert pops <= 24 // MAX_POP_BATCH + 2, f"{pops} pops for 24 messages"
    assert client.hlen("unacked") == 0


def test_an_idle_consumer_wakes_for_any_queue_and_priority(redis_url: str) -> None:
    queues = [kombu.Queue("first"), kombu.Queue("second")]
    with connection(redis_url) as conn, connection(redis_url) as producer:
        got: list[Any] = []
        with conn.Consumer(queues, callbacks=[lambda body, message: got.append(body)]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.6)  # idle: waiting, nothing to take
            publish(producer, queues[1], "late", priority=9)
            conn.drain_events(timeout=5)
    assert got == ["late"]


def test_global_keyprefix_applies_to_queues_and_unacked_records(
    redis_url: str, client: redis.Redis
) -> None:
    queue = kombu.Queue("prefixed")
    held: list[Any] = []
    with connection(redis_url, global_keyprefix="app1:") as conn:
        publish(conn, queue, "x")
        assert client.llen("app1:prefixed") == 1
        with conn.Consumer(queue, callbacks=[lambda body, message: held.append(message)]):
            conn.drain_events(timeout=5)
        assert client.hlen("app1:unacked") == 1
        assert client.zcard("app1:unacked_index") == 1
        held[0].ack()
    assert client.hlen("app1:unacked") == 0
    assert not client.exists("unacked", "unacked_index", "prefixed")


@pytest.mark.parametrize("prefix", ["", "app2:"])
def test_a_no_ack_consumer_leaves_no_unacked_record(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    queue = kombu.Queue("fire-and-forget")
    got: list[Any] = []
    with connection(redis_url, global_keyprefix=prefix) as conn:
        publish(conn, queue, 1)
        publish(conn, queue, 2)
        with conn.Consumer(queue, no_ack=True, callbacks=[lambda b, m: got.append(b)]):
            conn.drain_events(timeout=5)
        assert queue(conn.default_channel).get(no_ack=True).payload == 2
    assert got == [1]
    assert client.hlen(prefix + "unacked") == 0


def test_a_close_after_the_connection_was_released_keeps_held_messages(
    redis_url: str, client: redis.Redis
) -> None:
    """After a broker failure Celery may close a channel whose kombu connection is
    already released: kombu's restore then raised AttributeError, which Celery
    treats as unrecoverable and the worker exited. The held message stays recorded,
    and the next channel to that Redis puts it back at its first poll (nothing holds
    the message any more: nothing can acknowledge it)."""
    queue = kombu.Queue("orphaned")
    conn = connection(redis_url)
    try:
        publish(conn, queue, 1)
        channel = conn.default_channel
        held = queue(channel).get()
        assert held is not None and held.payload == 1
        channel.connection.client = None  # what the release leaves behind
        channel.close()
    finally:
        conn.client = None
    assert client.llen("orphaned") == 0
    assert client.hlen("unacked") == 1
    del held  # the consumer dropped it
    with connection(redis_url) as again:
        assert drain(again, [queue], 1) == [1]
    assert client.hlen("unacked") == 0


@pytest.mark.parametrize("how", ["ack", "reject"])
def test_a_late_ack_on_a_closed_channel_leaves_the_message_to_run_again(
    redis_url: str, client: redis.Redis, how: str
) -> None:
    """A job finishing after the broker connection broke is acknowledged on a closed
    channel: kombu raised AttributeError there, which Celery treats as unrecoverable
    (the worker exited). The message was put back when the channel closed."""
    queue = kombu.Queue("late-ack")
    with connection(redis_url) as conn:
        publish(conn, queue, 1)
        channel = conn.channel()
        held = queue(channel).get()
        assert held is not None
        # Celery's consumer restores what it holds as the connection breaks, then
        # closes the channel (which then drops its Redis pools and its transport).
        channel.qos.restore_unacked_once()
        channel.close()
        held.ack() if how == "ack" else held.reject()
    assert client.llen("late-ack") == 1
    assert client.hlen("unacked") == 0


@pytest.fixture
def crashing_redis(own_redis: Any) -> Iterator[tuple[Any, redis.Redis]]:
    """The test's own append-only Redis, and a plain client on it."""
    plain = redis.Redis.from_url(own_redis.url(0))
    yield own_redis, plain
    plain.close()


def test_what_a_channel_held_when_redis_died_is_back_at_the_next_first_poll(
    crashing_redis: tuple[Any, redis.Redis],
) -> None:
    """Redis crashes while a consumer holds messages: kombu's restore as the channel
    closes fails, and they would wait in ``unacked`` for the visibility timeout (an
    hour here). The channel the consumer reconnects with puts back at once those
    the consumer dropped (Celery drops the prefetched jobs no process took)."""
    server, plain = crashing_redis
    url = server.url(0)
    queue = kombu.Queue("stranded")
    with connection(url, visibility_timeout=3600) as conn:
        for body in range(3):
            publish(conn, queue, body)
        channel = conn.channel()
        held = [queue(channel).get() for _ in range(2)]
        assert [m.payload for m in held if m is not None] == [0, 1]
        server.kill()
        channel.close()  # Redis is gone: nothing can be put back now
        del held
    server.start()
    assert plain.hlen("unacked") == 2, "appendfsync always kept the unacked records"
    with connection(url, visibility_timeout=3600) as conn:
        assert sorted(drain(conn, [queue], 3)) == [0, 1, 2]
    assert plain.hlen("unacked") == 0 and plain.llen("stranded") == 0


def test_an_ack_on_the_closed_channel_is_sent_by_the_next_one(
    crashing_redis: tuple[Any, redis.Redis],
) -> None:
    """A job that finishes while Redis is down is acknowledged on the closed
    channel: the next channel removes its unacked record instead of restoring it."""
    server, plain = crashing_redis
    url = server.url(0)
    queue = kombu.Queue("finished-offline")
    with connection(url, visibility_timeout=3600) as conn:
        publish(conn, queue, "done")
        publish(conn, queue, "not done")
        channel = conn.channel()
        done, not_done = queue(channel).get(), queue(channel).get()
        assert done is not None and not_done is not None
        server.kill()
        channel.close()
        done.ack()
        del done, not_done  # the consumer dropped the other one
    server.start()
    with connection(url, visibility_timeout=3600) as conn:
        assert drain(conn, [queue], 2) == ["not done"]
    assert plain.hlen("unacked") == 0 and plain.llen("finished-offline") == 0


def test_a_message_still_held_after_the_reconnection_is_kept_until_its_ack(
    crashing_redis: tuple[Any, redis.Redis],
) -> None:
    """A job still running (or queued in the threads pool) when the consumer
    reconnects is not handed out again: its message stays unacked, refreshed by the
    new channel, until its acknowledgement arrives on the closed channel. Should
    the consumer drop it unacknowledged, it goes back to its queue."""
    server, plain = crashing_redis
    url = server.url(0)
    queue = kombu.Queue("still-running")
    with connection(url, visibility_timeout=3600) as conn:
        publish(conn, queue, "running")
        publish(conn, queue, "dropped later")
        channel = conn.channel()
        running, dropped = queue(channel).get(), queue(channel).get()
        assert running is not None and dropped is not None
        server.kill()
        channel.close()
    server.start()
    with connection(url, visibility_timeout=3600) as conn:
        assert drain(conn, [queue], 1, timeout=1) == []  # both still held: kept
        assert plain.hlen("unacked") == 2
        running.ack()
        del dropped
        # The heartbeat sees "dropped" is gone: back to its queue, then delivered.
        conn.default_channel.connection.refresh_unacked()
        assert drain(conn, [queue], 1) == ["dropped later"]
    assert plain.hlen("unacked") == 0 and plain.llen("still-running") == 0


def test_acks_sent_behind_the_pop_are_kept_when_the_next_write_fails(
    crashing_redis: tuple[Any, redis.Redis],
) -> None:
    """On a worker's event loop, acks ride behind the pop in flight. Redis dies
    before running them, and the next write on that connection fails (redis-py
    drops the connection, kombu forgets the pop): the acks are still sent by the
    next channel, so finished jobs are not left in ``unacked`` to run again after
    the visibility timeout."""
    server, plain = crashing_redis
    url = server.url(0)
    queue = kombu.Queue("acked-behind-pop")
    with connection(url, visibility_timeout=3600) as conn:
        publish(conn, queue, "done")
        channel = conn.default_channel
        message = queue(channel).get()
        assert message is not None and plain.hlen("unacked") == 1
        conn.Consumer([kombu.Queue("acked-behind-pop-idle")]).consume()
        poller = conn.transport.cycle
        poller._register_BRPOP(channel)  # a first poll, as kombu's event loop does it
        with contextlib.suppress(Empty):
            channel._brpop_read()
        conn.transport.hub_thread = _here()  # acks defer, as on the worker's loop
        message.ack()
        assert plain.hlen("unacked") == 1, "the ack waits for the next pop"
        server.kill()
        poller._register_BRPOP(channel)  # the ack goes behind the pop, to a dead server
        assert channel._in_poll, "the write was accepted by the kernel"
        with contextlib.suppress(OSError):  # unless the server's reset did already:
            channel._in_poll._sock.shutdown(socket.SHUT_WR)  # the next write fails
        channel._deferred.append(["PUBLISH", "acked-behind-pop-events", "event"])
        channel.send_with_pop()
        assert not channel._in_poll, "redis-py dropped the connection"
        channel.close()
    server.start()
    with connection(url, visibility_timeout=3600) as conn:
        assert drain(conn, [queue], 1, timeout=1) == [], "the finished job came back"
    assert plain.hlen("unacked") == 0 and plain.llen("acked-behind-pop") == 0


def test_a_pop_whose_reply_was_lost_is_found_by_its_score(
    crashing_redis: tuple[Any, redis.Redis],
) -> None:
    """The connection breaks after Redis ran the pop but before its reply was read:
    the messages it took are recorded as unacked, yet no consumer has them. The
    next channel finds them by the pop's score and puts them back."""
    server, plain = crashing_redis
    url = server.url(0)
    queue = kombu.Queue("lost-pop")
    with connection(url, visibility_timeout=3600) as conn:
        publish(conn, queue, "taken")
        channel = conn.default_channel
        command = channel._pop_command([queue.name], [True])
        plain.eval(POP_SCRIPT, *command)  # ran; its reply goes nowhere
        assert plain.hlen("unacked") == 1 and plain.llen("lost-pop") == 0
        channel._lost_pop()  # what a connection error while reading it does
    with connection(url, visibility_timeout=3600) as conn:
        assert drain(conn, [queue], 1) == ["taken"]
    assert plain.hlen("unacked") == 0


def test_the_pop_script_survives_a_script_flush(redis_url: str, client: redis.Redis) -> None:
    """Redis restarted (or SCRIPT FLUSH): the consumer sends the script again."""
    queue = kombu.Queue("flushed")
    with connection(redis_url) as conn:
        publish(conn, queue, 1)
        assert drain(conn, [queue], 1) == [1]
        client.script_flush()
        publish(conn, queue, 2)
        assert drain(conn, [queue], 1) == [2]
        client.script_flush()
        publish(conn, queue, 3)
        message = queue(conn.default_channel).get()
        assert message.payload == 3
        message.ack()
    assert client.hlen("unacked") == 0


def test_held_messages_are_refreshed_and_abandoned_ones_restored(
    redis_url: str, client: redis.Redis
) -> None:
    """The heartbeat: only messages no live consumer holds come back."""
    queue = kombu.Queue("held")
    with connection(redis_url, visibility_timeout=1) as conn:
        publish(conn, queue, "held")
        publish(conn, queue, "abandoned")
        channel = conn.default_channel
        held = queue(channel).get()
        abandoned = queue(channel).get()
        # Forget the second one, as a dead worker would: Redis still records it.
        channel.qos._delivered.pop(abandoned.delivery_tag)
        old = time.time() - 60
        client.zadd("unacked_index", {held.delivery_tag: old, abandoned.delivery_tag: old})
        assert channel.qos.refresh_unacked() == 1
        channel.qos.restore_visible()
        assert client.llen("held") == 1  # only the abandoned one is back
        back = queue(channel).get()
        assert back.payload == "abandoned"
        back.ack()
        held.ack()
    assert client.hlen("unacked") == 0


def test_the_script_records_what_kombu_records(redis_url: str, client: redis.Redis) -> None:
    """The unacked entry is kombu's [payload, exchange, routing_key], payload intact."""
    payload = json.dumps(
        {"body": "e30=", "headers": {"stamps": {}, "list": []}, "properties": {
            "delivery_tag": "t1", "delivery_info": {"exchange": "", "routing_key": "q"}}}
    )  # fmt: skip
    client.lpush("q", payload)
    reply = client.eval(POP_SCRIPT, 3, "unacked", "unacked_index", "q", "12.5", "1", "1")
    assert reply == [b"q", payload.encode(), 1]
    assert json.loads(client.hget("unacked", "t1")) == [json.loads(payload), "", "q"]
    assert client.hget("unacked", "t1").decode().startswith("[" + payload + ",")
    assert client.zscore("unacked_index", "t1") == 12.5
    assert client.eval(POP_SCRIPT, 3, "unacked", "unacked_index", "q", "1", "1", "1") is None


@pytest.mark.parametrize(("timeout", "interval"), [(1, 0.25), (3, 0.75), (20, 5.0), (3600, 10.0)])
def test_sweep_interval_follows_the_visibility_timeout(timeout: int, interval: float) -> None:
    assert sweep_interval(timeout) == interval


# -- selection from Settings ---------------------------------------------------------


def test_broker_settings_for_redis() -> None:
    config = broker_settings(Settings(JOB_QUEUE_URL="redis://h:6379/2", JOB_VISIBILITY_TIMEOUT=9))
    assert config["broker_url"] == "redis://h:6379/2"
    assert config["broker_transport"] == REDIS_TRANSPORT
    assert config["broker_transport_options"]["visibility_timeout"] == 9
    assert "broker_use_ssl" not in config
    # Running jobs finish through a broker restart; the transport forwards their acks.
    assert config["worker_cancel_long_running_tasks_on_connection_loss"] is False


def test_broker_settings_for_rabbitmq() -> None:
    url = "amqp://u:p@h:5672/v"
    config = broker_settings(Settings(JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=url))
    assert config["broker_url"] == url
    assert "broker_transport" not in config
    assert config["broker_transport_options"] == {"confirm_publish": True}
    # RabbitMQ hands them to another consumer at once: terminated, not run twice at once.
    assert config["worker_cancel_long_running_tasks_on_connection_loss"] is True


def test_a_bare_rediss_url_verifies_certificates() -> None:
    import ssl

    config = broker_settings(Settings(JOB_QUEUE_URL="rediss://h:6380/0"))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert config["broker_transport"] == REDISS_TRANSPORT
    explicit = broker_settings(Settings(JOB_QUEUE_URL="rediss://h:6380/0?ssl_cert_reqs=none"))
    assert "broker_use_ssl" not in explicit  # the URL says it


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_urls_are_shown_with_their_scheme(scheme: str) -> None:
    """Celery's banner and Flower's broker page read the scheme of ``as_uri()``."""
    url = f"{scheme}://:pw@127.0.0.1:6390/3"
    app = create_app(Settings(JOB_QUEUE_URL=url))
    with app.connection() as conn:
        assert conn.as_uri() == f"{scheme}://:**@127.0.0.1:6390/3"
        assert conn.as_uri(include_password=True) == url
        assert conn.transport_cls in (REDIS_TRANSPORT, REDISS_TRANSPORT)
    app.close()


def test_unix_socket_urls_keep_the_transport() -> None:
    assert kombu_redis_url("unix:///run/redis.sock?db=3") == (
        "zephyr-redis+socket:///run/redis.sock?virtual_host=3"
    )
    assert kombu_redis_url("redis://h/0") == "redis://h/0"


# -- real servers with a password, TLS, a unix socket -----------------------------------


class PrivateRedis:
    """A redis-server with extra arguments (password, TLS, unix socket) for one test."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        binary = redis_binary()
        need(binary is not None, "redis-server")
        assert binary is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(directory), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    servers: list[PrivateRedis] = []

    def start(*args: str, port: int | None = None, check_port: int | None = None) -> int:
        server = PrivateRedis(tmp_path / f"r{len(servers)}", *args, port=port)
        servers.append(server)
        wait_until(lambda: port_open(check_port or server.port), 10, "redis")
        return server.port

    yield start
    for server in servers:
        server.stop()


def roundtrip(url: str, *, fail_fast: bool = False) -> Any:
    """Send a message through the app's broker connection and take it back."""
    app = create_app(Settings(JOB_QUEUE_URL=url, JOB_RESULT_URL="redis://127.0.0.1:1/0"))
    if fail_fast:  # a refused connection raises at once instead of being retried
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "max_retries": 0}
    queue = kombu.Queue("roundtrip")
    try:
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, Transport)
            publish(conn, queue, {"ok": True})
            message = queue(conn.default_channel).get()
            message.ack()
            return message.payload
    finally:
        app.close()


def test_passwords_work(private_redis: Any) -> None:
    port = private_redis("--requirepass", "s3cret")
    assert roundtrip(f"redis://:s3cret@127.0.0.1:{port}/1") == {"ok": True}
    with pytest.raises(Exception, match=r"(?i)auth|password"):
        roundtrip(f"redis://:wrong@127.0.0.1:{port}/1", fail_fast=True)


def test_tls_works(private_redis: Any, tmp_path: Path) -> None:
    need(shutil.which("openssl") is not None, "openssl")
    cert, key = self_signed_certificate(tmp_path)
    tls_port = free_port()
    private_redis(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--requirepass", "pw",
        check_port=tls_port,
    )  # fmt: skip
    url = f"rediss://:pw@127.0.0.1:{tls_port}/0"
    assert roundtrip(f"{url}?ssl_cert_reqs=required&ssl_ca_certs={cert}") == {"ok": True}
    # A bare rediss:// verifies the certificate: this self-signed one is refused.
    with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
        roundtrip(url, fail_fast=True)


def test_unix_socket_works(private_redis: Any, tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    private_redis("--unixsocket", str(sock))
    wait_until(sock.exists, 10, "the socket")
    assert roundtrip(f"unix://{sock}?db=2") == {"ok": True}
