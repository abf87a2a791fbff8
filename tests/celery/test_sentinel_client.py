"""The producer side of jobs on Redis Sentinel: enqueue, results, wait(), JOB_ENQUEUE_REPLICAS.

All on the session's Sentinel topology (one master, one replica, three Sentinels:
never killed here; tests/celery/test_sentinel_failover.py kills its own). What a user
relies on: ``delay()`` reaches the master the Sentinels name, by the event-loop fast
path; ``wait()`` and ``status()`` read results stored there; a connection still on a
server that was demoted (it answers ``-READONLY``) does not fail the send: the message
goes to the master instead; with ``JOB_ENQUEUE_REPLICAS=N`` an enqueue returns once N
replicas have the message, and otherwise raises an error that says the job IS queued,
on every send path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.servers import RedisServer, SentinelTopology
from zephyr_celery import EnqueueError, JobHandle, create_app, job, set_app
from zephyr_celery._redis import publisher as _redis_publish
from zephyr_celery._redis import wire as _wire
from zephyr_celery._redis.backend import SentinelBackend
from zephyr_celery._redis.replicas import NotReplicatedError
from zephyr_core import ConfigError, Settings

#: The database these tests use on the session topology (emptied before each test).
DB = 5


@pytest.fixture
def topology(sentinel_topology: SentinelTopology) -> SentinelTopology:
    master(sentinel_topology).flushdb()
    return sentinel_topology


def master(topology: SentinelTopology, db: int = DB) -> redis.Redis:
    host, port = topology.master_address()
    return redis.Redis(host=host, port=port, db=db)


def replica_address(topology: SentinelTopology) -> tuple[str, int]:
    address = topology.master_address()
    return next(node.address for node in topology.servers if node.address != address)


def replica(topology: SentinelTopology, db: int = DB) -> redis.Redis:
    host, port = replica_address(topology)
    return redis.Redis(host=host, port=port, db=db)


def queued_ids(client: redis.Redis, queue: str = "celery") -> list[str]:
    try:
        return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


@pytest.fixture
def app_for(topology: SentinelTopology) -> Iterator[Any]:
    """``app_for(**settings)``: the process-wide app on the topology's URL (db DB)."""
    made: list[Any] = []

    def make(url: str | None = None, **settings: Any) -> Any:
        app = create_app(Settings(JOB_QUEUE_URL=url or topology.url(DB), **settings))
        set_app(app)
        made.append(app)
        return app

    yield make
    set_app(None)
    for app in made:
        app.close()


@job(name="sentinel_client.add")
async def add(a: int, b: int) -> int:
    return a + b


async def test_delay_reaches_the_master_by_the_fast_path(
    topology: SentinelTopology, app_for: Any
) -> None:
    app = app_for()
    handle = await add.delay(1, 2)
    publisher = _redis_publish.current(app)
    assert publisher is not None, "the event-loop fast path was not taken"
    assert publisher._target.follows_master
    assert queued_ids(master(topology)) == [handle.id]
    assert queued_ids(replica(topology)) in ([], [handle.id])  # replicated, never elsewhere


async def test_the_master_name_may_come_from_the_setting(
    topology: SentinelTopology, app_for: Any
) -> None:
    url = topology.url(DB).split("?")[0]  # no ?master_name=
    app = app_for(url, REDIS_SENTINEL_MASTER=topology.master_name)
    handle = await add.delay(2, 3)
    assert queued_ids(master(topology)) == [handle.id]
    await asyncio.to_thread(app.backend.store_result, handle.id, 5, "SUCCESS")
    assert await handle.wait(timeout=10) == 5


async def test_a_readonly_reply_sends_the_message_again_to_the_master(
    topology: SentinelTopology, app_for: Any
) -> None:
    """A connection left on a demoted server (it now answers -READONLY) is dropped and
    the message goes to the master the Sentinels name, once."""
    app = app_for()
    await add.delay(0, 0)  # the publisher exists, connected to the master
    publisher = _redis_publish.current(app)
    assert publisher is not None
    host, port = replica_address(topology)
    loop = asyncio.get_running_loop()
    assert publisher._wire is not None
    publisher._wire.close()
    publisher._wire = await _wire.connect(
        {"host": host, "port": port, "db": DB}, lambda: _wire.Replies(loop)
    )
    master(topology).delete("celery")
    handle = await add.delay(1, 1)
    assert queued_ids(master(topology)) == [handle.id]
    assert publisher._wire is not None and not publisher._wire.closed
    assert publisher._wire._transport is not None
    assert publisher._wire._transport.get_extra_info("peername")[1] == topology.master_address()[1]


async def test_results_are_stored_and_awaited_on_the_master(
    topology: SentinelTopology, app_for: Any
) -> None:
    app = app_for()
    assert isinstance(app.backend, SentinelBackend)
    handle = JobHandle("sentinel-client-result", app)
    waiting = asyncio.ensure_future(handle.wait(timeout=10))
    await asyncio.to_thread(app.backend.store_result, handle.id, {"n": 1}, "SUCCESS")
    assert await waiting == {"n": 1}
    assert await handle.status() == "SUCCESS"
    key = app.backend.get_key_for_task(handle.id)
    assert master(topology).get(key) is not None


def test_the_backend_shows_its_url_without_passwords(topology: SentinelTopology) -> None:
    url = topology.url(DB).replace("sentinel://", "sentinel://:s3cret@")
    app = create_app(Settings(JOB_QUEUE_URL=url))
    try:
        assert "s3cret" not in app.backend.as_uri()
        assert "s3cret" not in repr(app.backend.as_uri())
    finally:
        app.close()


# -- JOB_ENQUEUE_REPLICAS ----------------------------------------------------------------

#: The three ways a message leaves: the fast path (await delay()), Celery's path in the
#: caller's thread (delay_sync) and Celery's path through the publisher thread (a broker
#: with a global key prefix cannot take the fast path).
PATHS = ["fast", "sync", "thread"]


async def send(path: str, app_for: Any, url: str | None = None, **settings: Any) -> str:
    overrides: dict[str, Any] = {}
    app = app_for(url, **settings)
    if path == "thread":
        overrides = {"global_keyprefix": "pfx:"}
        app.conf.broker_transport_options = {
            **(app.conf.broker_transport_options or {}),
            **overrides,
        }
        assert not _redis_publish.eligible(app)
    if path == "sync":
        return str(await asyncio.to_thread(add.delay_sync, 1, 2))
    return str(await add.delay(1, 2))


def queue_of(path: str) -> str:
    return "pfx:celery" if path == "thread" else "celery"


@pytest.mark.parametrize("path", PATHS)
async def test_one_replica_confirms_the_job(
    path: str, topology: SentinelTopology, app_for: Any
) -> None:
    job_id = await send(path, app_for, JOB_ENQUEUE_REPLICAS=1)
    assert queued_ids(master(topology), queue_of(path)) == [job_id]
    # WAIT returned: the replica has it already, no polling needed.
    assert queued_ids(replica(topology), queue_of(path)) == [job_id]


@pytest.mark.parametrize("path", PATHS)
async def test_too_few_replicas_raise_an_error_that_says_the_job_is_queued(
    path: str, topology: SentinelTopology, app_for: Any
) -> None:
    with pytest.raises(NotReplicatedError) as raised:
        await send(path, app_for, JOB_ENQUEUE_REPLICAS=2, JOB_ENQUEUE_REPLICAS_TIMEOUT=0.1)
    error = raised.value
    assert isinstance(error, EnqueueError)
    assert (error.confirmed, error.wanted) == (1, 2)
    message = str(error)
    assert "IS queued" in message
    assert "JOB_ENQUEUE_REPLICAS=2" in message and "JOB_ENQUEUE_REPLICAS_TIMEOUT=0.1s" in message
    assert "may be lost if the master dies" in message
    assert error.job_id is not None
    assert queued_ids(master(topology), queue_of(path)) == [error.job_id]


async def test_jobs_sent_together_are_each_confirmed_or_each_refused(
    topology: SentinelTopology, app_for: Any
) -> None:
    """200 delay() at once (their messages share WAITs): each returns once the replica
    has it; asking for 2 replicas, each raises with its own id, and each is queued."""
    app_for(JOB_ENQUEUE_REPLICAS=1)
    handles = await asyncio.gather(*(add.delay(i, i) for i in range(200)))
    assert sorted(queued_ids(replica(topology))) == sorted(h.id for h in handles)

    master(topology).delete("celery")
    app_for(JOB_ENQUEUE_REPLICAS=2, JOB_ENQUEUE_REPLICAS_TIMEOUT=0.1)
    errors = await asyncio.gather(*(add.delay(i, i) for i in range(200)), return_exceptions=True)
    assert all(isinstance(error, NotReplicatedError) for error in errors), errors[:3]
    ids = [error.job_id for error in errors if isinstance(error, NotReplicatedError)]
    assert len(set(ids)) == 200
    assert sorted(queued_ids(master(topology))) == sorted(ids)


async def test_replicas_on_a_single_redis_with_a_replica(
    topology: SentinelTopology, app_for: Any
) -> None:
    """No Sentinel needed: a redis:// master with a replica counts it the same way."""
    host, port = topology.master_address()
    handle = await send("fast", app_for, f"redis://{host}:{port}/{DB}", JOB_ENQUEUE_REPLICAS=1)
    assert queued_ids(replica(topology)) == [handle]


async def test_replicas_on_a_redis_without_replicas_fail_after_the_timeout(
    redis_server: RedisServer, redis_url: str, app_for: Any
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(NotReplicatedError, match="only 0 of JOB_ENQUEUE_REPLICAS=1"):
        await send(
            "fast", app_for, redis_url, JOB_ENQUEUE_REPLICAS=1, JOB_ENQUEUE_REPLICAS_TIMEOUT=0.2
        )
    assert 0.2 <= loop.time() - start < 5
    assert len(queued_ids(redis.Redis.from_url(redis_url))) == 1


# -- passwords and TLS (topologies of their own) --------------------------------------------


async def test_both_passwords_on_every_path(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    """Redis's password (the URL's userinfo) and the Sentinels' own (sentinel_password):
    the fast path and the waiter ask the Sentinels and log in to the master."""
    topology = own_sentinel_topology(password="redis-pw", sentinel_password="sentinel-pw")
    app = create_app(Settings(JOB_QUEUE_URL=topology.url(DB), JOB_ENQUEUE_REPLICAS=1))
    set_app(app)
    try:
        handle = await add.delay(1, 2)
        assert _redis_publish.current(app) is not None
        host, port = topology.master_address()
        queued = redis.Redis(host=host, port=port, db=DB, password="redis-pw")
        assert queued_ids(queued) == [handle.id]
        await asyncio.to_thread(app.backend.store_result, handle.id, 3, "SUCCESS")
        assert await handle.wait(timeout=10) == 3
        assert "redis-pw" not in app.backend.as_uri()
        assert "sentinel-pw" not in app.backend.as_uri()
    finally:
        set_app(None)
        app.close()


async def test_tls_sentinels_take_redis_pys_paths(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    """sentinels:// (TLS): no lean connection; Celery's path sends (with WAIT), redis-py's
    pub/sub waits, both on the master the Sentinels name."""
    topology = own_sentinel_topology(tls=True)
    assert topology.ca_file is not None
    url = topology.url(DB)
    assert "ssl_ca_certs=" in url  # the self-signed certificate's
    app = create_app(Settings(JOB_QUEUE_URL=url, JOB_ENQUEUE_REPLICAS=1))
    set_app(app)
    try:
        assert not _redis_publish.eligible(app)
        handle = await add.delay(1, 2)
        host, port = topology.master_address()
        queued = redis.Redis(
            host=host, port=port, db=DB, ssl=True, ssl_ca_certs=str(topology.ca_file)
        )
        assert queued_ids(queued) == [handle.id]
        waiting = asyncio.ensure_future(handle.wait(timeout=10))
        await asyncio.to_thread(app.backend.store_result, handle.id, 3, "SUCCESS")
        assert await waiting == 3
    finally:
        set_app(None)
        app.close()


async def test_replicas_with_rabbitmq_are_refused_naming_the_setting(
    rabbitmq_url: str, redis_url: str
) -> None:
    app = create_app(
        Settings(
            JOB_QUEUE_BACKEND="rabbitmq",
            JOB_QUEUE_URL=rabbitmq_url,
            JOB_RESULT_URL=redis_url,
            JOB_ENQUEUE_REPLICAS=1,
        )
    )
    set_app(app)
    try:
        with pytest.raises(ConfigError, match=r"JOB_ENQUEUE_REPLICAS=1.*not Redis") as raised:
            await add.delay(1, 2)
        assert raised.value.field == "JOB_ENQUEUE_REPLICAS"
    finally:
        set_app(None)
        app.close()
