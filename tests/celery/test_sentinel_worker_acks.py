"""Acknowledgements a fail-over lost are sent again when the worker reconnects.

Redis replicates asynchronously: an acknowledgement the master took just before it was
killed may never reach the replica promoted in its place. The message's unacked record
is then still there, and the job would run a second time once the visibility timeout
passes. The consuming channel remembers its last seconds of acknowledgements and the
channel the worker reconnects with sends them again at its first poll.

Here the lost acknowledgement is made by hand, on the session Sentinel topology (never
killed): a message is consumed and acknowledged, its unacked record written back as the
promoted replica would still hold it, and the consumer's channel closed and reopened as
after a connection loss.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.servers import SentinelTopology
from zephyr_celery._broker import broker_settings
from zephyr_core import Settings

#: The database of the session topology this test uses.
DB = 7


@pytest.fixture
def master(sentinel_topology: SentinelTopology) -> Iterator[redis.Redis]:
    client = redis.Redis(*sentinel_topology.master_address(), db=DB)
    client.flushdb()
    yield client
    client.close()


def test_an_ack_lost_in_a_failover_is_sent_again(
    sentinel_topology: SentinelTopology, master: redis.Redis
) -> None:
    config = broker_settings(Settings(JOB_QUEUE_URL=sentinel_topology.url(DB)))
    conn = Connection(
        config["broker_url"],
        transport=config["broker_transport"],
        transport_options=config["broker_transport_options"],
    )
    queue = Queue("acks", Exchange("acks"), "acks")
    got: list[Any] = []

    def keep(_body: Any, message: Any) -> None:
        got.append(message)

    try:
        Producer(conn.channel(), exchange=queue.exchange).publish(
            {"n": 1}, routing_key="acks", declare=[queue]
        )
        channel = conn.channel()
        Consumer(channel, [queue], callbacks=[keep], accept=["json"]).consume()
        conn.drain_events(timeout=5)
        (message,) = got
        record = master.hget("unacked", message.delivery_tag)
        assert record is not None  # taken by the atomic pop into the unacked record
        message.ack()
        assert master.hlen("unacked") == 0
        # The promoted replica never saw the ack: the record is back, as old as the pop.
        master.hset("unacked", message.delivery_tag, record)
        master.zadd("unacked_index", {message.delivery_tag: time.time()})
        channel.close()  # the connection dropped...

        again = conn.channel()  # ...and the worker reconnects
        Consumer(again, [queue], callbacks=[keep], accept=["json"]).consume()
        with pytest.raises(TimeoutError):  # nothing to deliver: the first poll ran
            conn.drain_events(timeout=1)
        assert master.hlen("unacked") == 0 and master.zcard("unacked_index") == 0
        assert len(got) == 1 and not master.llen("acks")
        assert json.loads(record)[0]["properties"]["delivery_tag"] == message.delivery_tag
    finally:
        conn.release()
