"""Subscriptions to a Redis Cluster's shard channels: ``SSUBSCRIBE`` on every master.

Each shard (a master and its replicas) has one invalidation channel
(``_cluster.channel_for_slot``); a process subscribes to each on a plain connection to the
shard's master, read like any other subscription (``_subscriptions.Receiver``). A lost
master (killed, or its slots moved: Redis then sends ``sunsubscribe``) ends that
subscription; the caller subscribes again from the new slot map.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from zephyr_cache._cluster import cluster_options, masters_with_channels
from zephyr_cache._subscriptions import LISTENER_OPTIONS, Subscribed, hand_over
from zephyr_core._topology import RedisTopology


async def subscribe_shards(
    topology: RedisTopology, handle: Callable[[bytes], None]
) -> list[Subscribed]:
    """SSUBSCRIBE to every shard's channel, on a plain connection to its master.

    redis-py's async ``ClusterPubSub`` can follow sharded channels, but reads them
    through ``get_sharded_message`` polling each node in turn; a plain connection per
    master lets the socket's own callback parse messages as on a single server, and a
    lost master (killed, or its slots moved: Redis then sends ``sunsubscribe``) ends the
    subscription, which is re-resolved from the slot map.
    """
    targets = await masters_with_channels(
        topology, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    options = {k: v for k, v in cluster_options(topology).items() if k != "startup_nodes"}
    subscribed: list[Subscribed] = []
    try:
        for host, port, channel in targets:
            client = Redis(
                host=host, port=port, retry=Retry(NoBackoff(), 0), **options, **LISTENER_OPTIONS
            )
            pubsub = client.pubsub()
            try:
                await pubsub.ssubscribe(channel)
            except BaseException:
                await Subscribed(client, pubsub, None, None).aclose()  # type: ignore[arg-type]
                raise
            subscribed.append(await hand_over(client, pubsub, "ssubscribe", handle))
    except BaseException:
        for subscription in subscribed:
            await subscription.aclose()
        raise
    return subscribed
