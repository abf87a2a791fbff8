"""The test topologies themselves: a Sentinel fail-over and a Cluster promotion really happen.

Other tests rely on ``kill_master`` + ``wait_failover`` / ``wait_promoted`` meaning what
they say; these check it with plain redis-py clients (none of our code).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.servers import RedisClusterServers, SentinelTopology, wait_until


def test_a_sentinel_topology_is_ready_and_its_url_names_every_sentinel(
    sentinel_topology: SentinelTopology,
) -> None:
    url = sentinel_topology.url()
    assert url.count(";") == 2 and url.endswith("/0?master_name=mymaster")
    host, port = sentinel_topology.master_address()
    client = redis.Redis(host=host, port=port)
    try:
        assert client.info("replication")["connected_slaves"] == 1
    finally:
        client.close()


def test_killing_the_master_promotes_the_replica_within_10_seconds(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    topology = own_sentinel_topology()
    old = topology.kill_master()
    started = time.monotonic()
    new = topology.wait_failover(old, timeout=10)
    assert new != old and time.monotonic() - started < 10
    client = redis.Redis(host=new[0], port=new[1])
    try:
        assert client.set("after-failover", "1") and client.get("after-failover") == b"1"
    finally:
        client.close()
    topology.restart_killed()
    topology.wait_ready(timeout=30)  # the old master is back, as a replica
    assert topology.master_address() == new


def test_a_cluster_serves_every_slot_and_survives_a_killed_master(
    own_redis_cluster: Callable[..., RedisClusterServers],
) -> None:
    cluster = own_redis_cluster()
    assert len(cluster.master_ports()) == 3 and cluster.url().startswith("redis+cluster://")
    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.master_ports()]
    client = RedisCluster(startup_nodes=nodes)
    try:
        keys = [f"key-{n}" for n in range(30)]  # spread over the three masters
        for key in keys:
            client.set(key, key)
        wait_until(lambda: _replicas_caught_up(cluster), 10, "replicas to have every write")
        old = cluster.kill_master(0)
        new = cluster.wait_promoted(old, timeout=10)
        assert new != old and new[1] in cluster.master_ports()

        def all_readable() -> bool:
            try:
                return all(client.get(key) == key.encode() for key in keys)
            except (redis.ConnectionError, redis.ClusterDownError, redis.TimeoutError):
                return False

        wait_until(all_readable, 10, "every key readable after the promotion")
    finally:
        client.close()


def _replicas_caught_up(cluster: RedisClusterServers) -> bool:
    """Every master's replica has acknowledged all of the master's writes."""
    for port in cluster.master_ports():
        node = redis.Redis(port=port)
        try:
            info = node.info("replication")
        finally:
            node.close()
        replica = info.get("slave0")
        if not replica or replica["offset"] != info["master_repl_offset"]:
            return False
    return True
