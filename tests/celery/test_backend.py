"""The one-round-trip result backend on a real Redis, side by side with Celery's own.

Tests about behaviour users rely on (a SUCCESS is kept, expiries, the publish) run on
both backends: Celery's shows what the test expects is what Celery does.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from celery import chord, group, states
from celery.app.task import Context
from celery.backends.redis import RedisBackend as CeleryRedisBackend
from celery.result import AsyncResult, GroupResult

from tests.servers import (
    RedisServer,
    free_port,
    need,
    port_open,
    redis_binary,
    self_signed_certificate,
    wait_until,
)
from zephyr_celery import JobHandle, create_app, job, testing
from zephyr_celery._redis.backend import STORE_RESULT_SHA, RedisBackend
from zephyr_core import Settings

#: The clock both backends read for ``date_done``, so their values compare byte for byte.
NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

RESULT_EXPIRES = 600
FAILURE_EXPIRES = 30


@pytest.fixture
def app(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    app = create_app(
        redis_settings, result_expires=RESULT_EXPIRES, result_failure_expires=FAILURE_EXPIRES
    )
    monkeypatch.setattr(app, "now", lambda: NOW)
    yield app
    app.close()


@pytest.fixture
def make_backend(app: Any, redis_server: RedisServer) -> Iterator[Callable[..., Any]]:
    """Build ``zephyr`` (ours) or ``celery`` (Celery's RedisBackend) on database ``db``."""
    made: list[Any] = []

    def make(kind: str, db: int = 0, on: Any = None) -> Any:
        cls = RedisBackend if kind == "zephyr" else CeleryRedisBackend
        backend = cls(app=on or app, url=redis_server.url(db))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.client.close()
        backend.client.connection_pool.disconnect()


@pytest.fixture(params=["zephyr", "celery"])
def backend(request: pytest.FixtureRequest, make_backend: Callable[..., Any]) -> Any:
    return make_backend(request.param)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def new_id() -> str:
    return uuid.uuid4().hex


def stored(client: redis.Redis, backend: Any, task_id: str) -> Any:
    return client.get(backend.get_key_for_task(task_id))


def request_for(task_id: str, app: Any) -> Context:
    """A worker's request with every field ``result_extended`` stores."""
    request = Context(
        id=task_id,
        task="shop.jobs.charge",
        args=[42, "EUR"],
        kwargs={"retry": True},
        hostname="worker-1@host",
        retries=2,
        delivery_info={"routing_key": "payments"},
        group="g-1",
        parent_id="p-1",
        stamps={"origin": "api"},
        stamped_headers=["origin"],
    )
    request.children.append(AsyncResult("child-1", app=app))  # a property, not a field
    return request


def test_redis_urls_pick_this_backend_and_keep_the_users_url() -> None:
    for url in (
        "redis://:pw@127.0.0.1:6390/3",
        "rediss://:pw@127.0.0.1:6390/3?ssl_cert_reqs=required",
    ):
        app = create_app(Settings(JOB_QUEUE_URL=url))
        assert type(app.backend) is RedisBackend
        assert app.conf.result_backend == url  # what status output and Flower show, masked
        celerys = CeleryRedisBackend(app=app, url=url)
        assert app.backend.as_uri() == celerys.as_uri()
        assert ":**@" in app.backend.as_uri()
        assert app.backend.connparams == celerys.connparams  # TLS included
        app.close()


def test_other_celery_apps_keep_celerys_backend(redis_url: str) -> None:
    from celery import Celery

    other = Celery("other", backend=redis_url, set_as_current=False)
    assert type(other.backend) is CeleryRedisBackend
    other.close()


@pytest.mark.parametrize(
    ("state", "result", "traceback"),
    [
        (states.SUCCESS, {"charged": [1, 2.5, "€"]}, None),
        (states.FAILURE, ValueError("card declined", 3), "Traceback (most recent call last):\n"),
        (states.RETRY, KeyError("gateway"), "Traceback (most recent call last):\n"),
        (states.STARTED, {"pid": 123, "hostname": "worker-1@host"}, None),
    ],
)
def test_stored_value_is_what_celery_writes(
    make_backend: Callable[..., Any],
    app: Any,
    redis_server: RedisServer,
    state: str,
    result: Any,
    traceback: str | None,
) -> None:
    ours, celerys = make_backend("zephyr", db=0), make_backend("celery", db=1)
    task_id = new_id()
    for backend in (ours, celerys):
        returned = backend.store_result(
            task_id, result, state, traceback=traceback, request=request_for(task_id, app)
        )
        assert returned == backend.encode_result(result, state)
    mine = redis.Redis.from_url(redis_server.url(0))
    theirs = redis.Redis.from_url(redis_server.url(1))
    key = ours.get_key_for_task(task_id)
    try:
        assert mine.get(key) == theirs.get(key)
        expected_ttl = FAILURE_EXPIRES if state == states.FAILURE else RESULT_EXPIRES
        assert expected_ttl - 5 < mine.ttl(key) <= expected_ttl
        assert expected_ttl - 5 < theirs.ttl(key) <= expected_ttl
    finally:
        mine.close()
        theirs.close()
    meta = ours.get_task_meta(task_id, cache=False)
    assert meta["status"] == state
    extended = {k: meta[k] for k in ("name", "args", "kwargs", "worker", "retries", "queue")}
    assert extended == {
        "name": "shop.jobs.charge",
        "args": [42, "EUR"],
        "kwargs": {"retry": True},
        "worker": "worker-1@host",
        "retries": 2,
        "queue": "payments",
    }
    assert meta["children"] == [[["child-1", None], None]]
    assert meta["date_done"] == (NOW.isoformat() if state in states.READY_STATES else None)


def test_a_success_is_not_overwritten(backend: Any, db: redis.Redis) -> None:
    task_id = new_id()
    backend.store_result(task_id, "first", states.SUCCESS)
    kept = stored(db, backend, task_id)
    with db.pubsub() as pubsub:
        pubsub.subscribe(backend.get_key_for_task(task_id))
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        # A second delivery of the same job, after the first one succeeded.
        backend.store_result(task_id, None, states.STARTED)
        backend.store_result(task_id, RuntimeError("worker lost"), states.FAILURE)
        backend.store_result(task_id, "second", states.SUCCESS)
        assert stored(db, backend, task_id) == kept
        assert pubsub.get_message(timeout=0.2) is None  # nobody is told anything new
    assert backend.get_task_meta(task_id, cache=False)["result"] == "first"


def test_states_before_success_are_overwritten(backend: Any, db: redis.Redis) -> None:
    task_id = new_id()
    backend.store_result(task_id, None, states.STARTED)
    backend.store_result(task_id, KeyError("x"), states.RETRY)
    backend.store_result(task_id, ValueError("y"), states.FAILURE)
    assert backend.get_task_meta(task_id, cache=False)["status"] == states.FAILURE
    backend.store_result(task_id, 7, states.SUCCESS)  # a failure is not final: a rerun wins
    assert backend.get_task_meta(task_id, cache=False)["result"] == 7
    db.set(backend.get_key_for_task(task_id), b"")  # empty reads as PENDING, like missing
    backend.store_result(task_id, 8, states.SUCCESS)
    assert backend.get_task_meta(task_id, cache=False)["result"] == 8


def test_the_publish_carries_the_stored_value(backend: Any, db: redis.Redis) -> None:
    task_id = new_id()
    key = backend.get_key_for_task(task_id)
    with db.pubsub() as pubsub:
        pubsub.subscribe(key)
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        backend.store_result(task_id, {"n": 1}, states.SUCCESS)
        message = pubsub.get_message(timeout=5)
    assert message is not None
    assert (message["channel"], message["data"]) == (key, db.get(key))


@pytest.mark.parametrize(("expires", "failure_expires"), [(0, None), (120, 0), (None, 45)])
def test_expiry_follows_the_settings(
    redis_settings: Settings,
    make_backend: Callable[..., Any],
    db: redis.Redis,
    expires: int | None,
    failure_expires: int | None,
) -> None:
    """0 or None keeps results forever; failures follow result_failure_expires if set."""
    overrides = {"result_expires": expires, "result_failure_expires": failure_expires}
    other = create_app(redis_settings, **overrides)
    try:
        for kind in ("zephyr", "celery"):
            backend = make_backend(kind, on=other)
            done, failed = new_id(), new_id()
            key = backend.get_key_for_task(failed)
            db.set(key, b'{"status": "STARTED"}', ex=1000)  # SET without EX drops this TTL
            backend.store_result(done, 1, states.SUCCESS)
            backend.store_result(failed, ValueError("no"), states.FAILURE)
            ttl_done = db.ttl(backend.get_key_for_task(done))
            ttl_failed = db.ttl(key)
            want_done = expires
            want_failed = want_done if failure_expires is None else failure_expires
            for ttl, want in ((ttl_done, want_done), (ttl_failed, want_failed)):
                if want:
                    assert want - 5 < ttl <= want, kind
                else:
                    assert ttl == -1, kind  # no expiry
    finally:
        other.close()


def test_a_script_flush_is_survived(make_backend: Callable[..., Any], db: redis.Redis) -> None:
    backend = make_backend("zephyr")
    backend.store_result(new_id(), 1, states.SUCCESS)
    assert db.script_exists(STORE_RESULT_SHA) == [True]
    db.script_flush()
    task_id = new_id()
    backend.store_result(task_id, 2, states.SUCCESS)
    assert backend.get_task_meta(task_id, cache=False)["result"] == 2
    assert db.script_exists(STORE_RESULT_SHA) == [True]  # cached again by the EVAL


def test_a_redis_restart_is_ridden_out(own_redis: RedisServer) -> None:
    """Connection errors are retried (Celery's ensure) and the script comes back."""
    app = create_app(Settings(JOB_QUEUE_URL=own_redis.url(0)))
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    backend.store_result(new_id(), 0, states.SUCCESS)  # the script is cached, then lost
    retried = threading.Event()
    on_connection_error = backend.on_connection_error

    def note(*args: Any) -> Any:
        retried.set()
        return on_connection_error(*args)

    backend.on_connection_error = note
    own_redis.stop()
    task_id = new_id()
    errors: list[BaseException] = []

    def store() -> None:
        try:
            backend.store_result(task_id, "after", states.SUCCESS)
        except BaseException as exc:
            errors.append(exc)

    storing = threading.Thread(target=store)
    storing.start()
    try:
        assert retried.wait(30), "the store never retried"
    finally:
        own_redis.start()
        storing.join(60)
    assert not storing.is_alive()
    assert errors == []
    assert backend.get_task_meta(task_id, cache=False)["result"] == "after"
    backend.client.close()
    app.close()


def test_a_result_outlives_an_outage_longer_than_the_connection_retries(
    own_redis: RedisServer,
) -> None:
    """Celery's Redis backend gives up on a connection error after its retry policy
    (about 19 s by default; 1 s here), and the job that just returned was then
    reported failed with a ConnectionError. The store is tried again instead, with
    backoff (``result_backend_always_retry``), until Redis is back."""
    quick = {"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 0.5}
    app = create_app(
        Settings(JOB_QUEUE_URL=own_redis.url(0)),
        result_backend_transport_options={"retry_policy": quick},
    )
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    gave_up = threading.Event()
    backend.on_backend_retryable_error = lambda exc: gave_up.set()
    own_redis.stop()
    task_id = new_id()
    errors: list[BaseException] = []

    def store() -> None:
        try:
            backend.store_result(task_id, "after", states.SUCCESS)
        except BaseException as exc:
            errors.append(exc)

    storing = threading.Thread(target=store)
    storing.start()
    try:
        assert gave_up.wait(30), "the store was not tried again after its connection retries"
    finally:
        own_redis.start()
        storing.join(60)
    assert not storing.is_alive()
    assert errors == []
    assert backend.get_task_meta(task_id, cache=False)["result"] == "after"
    backend.client.close()
    app.close()


def test_an_unreadable_stored_value_goes_through_celerys_code(
    redis_settings: Settings, make_backend: Callable[..., Any], db: redis.Redis
) -> None:
    """A compressed SUCCESS (from a worker with result_compression) is still kept."""
    compressing = create_app(redis_settings, result_compression="gzip")
    try:
        zipped = make_backend("zephyr", on=compressing)
        plain = make_backend("zephyr")
        done, started = new_id(), new_id()
        zipped.store_result(done, "zipped", states.SUCCESS)
        zipped.store_result(started, None, states.STARTED)
        kept = stored(db, plain, done)
        assert not kept.startswith(b"{")
        plain.store_result(done, ValueError("late"), states.FAILURE)
        assert stored(db, plain, done) == kept
        plain.store_result(started, "plain", states.SUCCESS)
        assert plain.get_task_meta(started, cache=False)["result"] == "plain"
        assert stored(db, plain, started).startswith(b"{")
    finally:
        compressing.close()


async def test_the_publish_wakes_a_waiter(redis_app: Any, redis_url: str) -> None:
    backend = redis_app.backend
    assert isinstance(backend, RedisBackend)
    handle: JobHandle[Any] = JobHandle(new_id())
    waiting = asyncio.ensure_future(handle.wait(timeout=30))
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = backend.get_key_for_task(handle.id)

        async def subscribed() -> bool:
            return bool((await client.pubsub_numsub(key))[0][1])

        deadline = asyncio.get_running_loop().time() + 10
        while not await subscribed():
            assert asyncio.get_running_loop().time() < deadline, "the waiter never subscribed"
            await asyncio.sleep(0.01)
        await asyncio.to_thread(backend.store_result, handle.id, {"ok": True}, states.SUCCESS)
        assert await waiting == {"ok": True}
    finally:
        waiting.cancel()
        await client.aclose()
        backend.client.close()


async def test_a_job_stores_its_extended_fields(jobs_app: Any) -> None:
    @job(name="backend.tests.double", queue="doubling")
    async def double(n: int) -> int:
        return 2 * n

    async with testing.worker(jobs_app, queues=["doubling"]):
        handle = await double.delay(21)
        assert await handle.wait(timeout=30) == 42
    meta = jobs_app.backend.get_task_meta(handle.id, cache=False)
    assert (meta["name"], meta["args"], meta["kwargs"], meta["retries"]) == (
        "backend.tests.double",
        [21],
        {},
        0,
    )
    assert meta["queue"] == "doubling"
    assert meta["worker"]


def test_groups_and_chords_complete(redis_app: Any) -> None:
    @redis_app.task(name="backend.tests.add")
    def add(x: int, y: int) -> int:
        return x + y

    @redis_app.task(name="backend.tests.total")
    def total(numbers: list[Any]) -> int:
        return sum(sum(n) if isinstance(n, list) else n for n in numbers)

    with testing.worker(redis_app):
        grouped = group(add.s(i, i) for i in range(5)).apply_async()
        assert grouped.get(timeout=30) == [0, 2, 4, 6, 8]
        grouped.save()
        restored = GroupResult.restore(grouped.id, app=redis_app)
        assert restored is not None
        assert [r.id for r in restored.results] == [r.id for r in grouped.results]
        restored.forget()  # the members' results
        restored.delete()  # the saved group
        assert GroupResult.restore(grouped.id, app=redis_app) is None
        assert redis_app.backend.get_task_meta(grouped.results[0].id, cache=False)["status"] == (
            states.PENDING
        )

        assert chord(add.s(i, 1) for i in range(4))(total.s()).get(timeout=30) == 10
        # A group inside the header: Celery saves the header for the callback to join.
        nested = chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)])(total.s())
        assert nested.get(timeout=30) == 12


def test_tls_stores_the_same(tmp_path: Path) -> None:
    need(redis_binary() is not None and shutil.which("openssl") is not None, "redis + openssl")
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [str(redis_binary()), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--save", "",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 10, "redis over TLS")
        url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
        app = create_app(Settings(JOB_QUEUE_URL=url))
        backend = app.backend
        assert type(backend) is RedisBackend
        task_id = new_id()
        backend.store_result(task_id, "over tls", states.SUCCESS)
        backend.store_result(task_id, ValueError("late"), states.FAILURE)
        assert backend.get_task_meta(task_id, cache=False)["result"] == "over tls"
        backend.client.close()
        backend.client.connection_pool.disconnect()
        app.close()
    finally:
        server.terminate()
        server.wait(10)
