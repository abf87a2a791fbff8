"""Job messages rendered from a template are exactly the messages Celery sends.

``await job.delay(...)`` on a Redis broker renders its message from a per-route
template instead of running Celery's ``send_task_message``. Workers, Flower and
anything else reading the queue must not be able to tell: each test here sends the
same job (same inputs, same job id) both ways onto a real Redis and compares what
landed there: the queued envelope byte for byte (but kombu's delivery tag) and the
``task-sent`` event field for field (but its clock and timestamp). Celery's path is
taken by connecting a ``before_task_publish`` receiver, which is also one of the
cases that must keep going through Celery, so that the receiver runs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from celery import signals
from celery.utils.saferepr import saferepr

from tests.servers import RedisServer
from zephyr_celery import create_app, get_app, job, set_app, testing
from zephyr_celery._redis import publisher as _redis_publish
from zephyr_celery._redis import waiter as _results
from zephyr_celery._redis.templates import Template
from zephyr_core import Settings


class Broker:
    """What reached the broker's Redis: queued messages and task-sent events."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub: Any = self.client.pubsub()

    async def start(self) -> None:
        await self.pubsub.psubscribe("*")  # the events channel, whatever its name
        assert (await self.pubsub.get_message(timeout=5))["type"] == "psubscribe"

    async def take(self, key: str | bytes) -> bytes:
        raw = await self.client.rpop(key)
        assert raw is not None, f"nothing queued on {key!r}"
        return bytes(raw)

    async def event(self) -> dict[str, Any]:
        while True:
            message = await self.pubsub.get_message(timeout=5)
            assert message is not None, "no task-sent event"
            if message["type"] == "pmessage":
                return dict(json.loads(message["data"]))

    async def no_event(self) -> None:
        message = await self.pubsub.get_message(timeout=0.3)
        assert message is None, message

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()


@pytest.fixture
async def broker(redis_app: Any, redis_url: str) -> AsyncIterator[Broker]:
    found = Broker(redis_url)
    await found.start()
    yield found
    await found.close()


def _through_celery(seen: list[Any]) -> Callable[[], Any]:
    """Connect a before_task_publish receiver (so messages go through Celery) that
    records the headers it sees; returns what disconnects it."""

    def receiver(headers: Any = None, **_: Any) -> None:
        seen.append(headers)

    signals.before_task_publish.connect(receiver, weak=False)
    return lambda: signals.before_task_publish.disconnect(receiver)


def _body(envelope: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(envelope["body"]))


Sent = tuple[bytes, dict[str, Any] | None]


async def _send_both(
    broker: Broker,
    send: Callable[[str], Any],
    key: str | bytes,
    *,
    rendered: bool = True,
    events: bool = True,
) -> tuple[Sent, Sent, list[Any]]:
    """The message and event of ``send(job_id)`` by template, then through Celery."""
    job_id = str(uuid.uuid4())
    await send(job_id)
    fast = (await broker.take(key), await broker.event() if events else None)
    if not events:
        await broker.no_event()
    # Whether it was rendered: the route's template (one route per test and loop).
    publisher = await _redis_publish.publisher_for(get_app())
    kind = Template if rendered else type(None)
    assert [type(t) for t in publisher._templates.values()] == [kind]
    seen: list[Any] = []
    stop = _through_celery(seen)
    try:
        await send(job_id)
    finally:
        stop()
    celery = (await broker.take(key), await broker.event() if events else None)
    return fast, celery, seen


def _assert_same(fast: Sent, celery: Sent) -> None:
    fast_raw, fast_event = fast
    celery_raw, celery_event = celery
    fast_tag = json.loads(fast_raw)["properties"]["delivery_tag"]
    celery_tag = json.loads(celery_raw)["properties"]["delivery_tag"]
    assert fast_tag != celery_tag  # each message has its own
    # The queued envelope: the same bytes once the delivery tag is the same.
    assert fast_raw.replace(fast_tag.encode(), celery_tag.encode()) == celery_raw
    if fast_event is None or celery_event is None:
        assert fast_event is celery_event is None
        return
    # The event: the same envelope and fields but for tag, clock and timestamp.
    fast_fields, celery_fields = _body(fast_event), _body(celery_event)
    assert fast_fields["clock"] > 0 and celery_fields["clock"] > fast_fields["clock"]
    assert abs(fast_fields["timestamp"] - celery_fields["timestamp"]) < 30
    for fields in (fast_fields, celery_fields):
        del fields["clock"], fields["timestamp"]
    assert list(fast_fields.items()) == list(celery_fields.items())
    for event in (fast_event, celery_event):
        del event["body"], event["properties"]["delivery_tag"]
    assert fast_event == celery_event


ARGUMENTS = [
    pytest.param(("data_1",), {}, id="one-string"),
    pytest.param((), {}, id="none"),
    pytest.param(
        ('it\'s "quoted"\n\\', 7, -2.5, None, True, "\u00e9\u6f22\U0001f600"),
        {"k": "v", "it's": 0},
        id="scalars-quotes-unicode",
    ),
    pytest.param(([1, {"a": [2, [3, [4, [5]]]]}],), {"d": {"e": ()}}, id="nested"),
    pytest.param(
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), uuid.UUID(int=5)),
        {"amount": decimal.Decimal("1.50"), "raw": b"\x00\xff", "text": b"ok"},
        id="values-kombu-json-carries",
    ),
    pytest.param(("x " * 700,), {"long": "y" * 2000}, id="truncated-repr"),
    pytest.param((float("nan"), 10**40, 1e300), {}, id="odd-numbers"),
]


@pytest.mark.parametrize(("args", "kwargs"), ARGUMENTS)
async def test_default_route_message_is_celerys(
    broker: Broker, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    @job(name="publish_fastpath.anything")
    async def anything(*args: Any, **kwargs: Any) -> None: ...

    fast, celery, seen = await _send_both(
        broker,
        lambda job_id: anything.apply_async(args, kwargs, job_id=job_id),
        "celery",
    )
    _assert_same(fast, celery)
    assert len(seen) == 1 and seen[0]["id"] == json.loads(fast[0])["headers"]["id"]


async def test_delay_message_is_celerys(broker: Broker) -> None:
    @job(name="publish_fastpath.greet")
    async def greet(name: str, *, greeting: str = "hello") -> str:
        return f"{greeting} {name}"

    job_ids: list[str] = []

    async def send(job_id: str) -> None:
        # delay() makes its own ids: compare with Celery's message for the same id.
        if not job_ids:
            job_ids.append(await greet.delay("ann", greeting="hi"))
        else:
            await greet.apply_async(("ann",), {"greeting": "hi"}, job_id=job_ids[0])

    fast, celery, _ = await _send_both(broker, send, "celery")
    _assert_same(fast, celery)
    envelope = json.loads(fast[0])
    assert envelope["headers"]["id"] == job_ids[0]
    assert _body(envelope)[:2] == [["ann"], {"greeting": "hi"}]
    assert envelope["headers"]["argsrepr"] == "['ann']"
    assert envelope["headers"]["kwargsrepr"] == "{'greeting': 'hi'}"


@pytest.mark.parametrize(
    ("overrides", "key", "rendered", "events"),
    [
        pytest.param({"task_send_sent_event": False}, "celery", True, False, id="no-sent-event"),
        pytest.param({"task_default_queue": "main"}, "main", True, True, id="default-queue"),
        pytest.param(
            {"task_default_delivery_mode": "transient"}, "celery", True, True, id="transient"
        ),
        pytest.param({"event_exchange": "myevents"}, "celery", True, True, id="event-exchange"),
        # Settings the template does not reproduce: Celery sends those messages.
        pytest.param({"task_compression": "gzip"}, "celery", False, True, id="compression"),
        pytest.param({"task_protocol": 1}, "celery", False, True, id="protocol-1"),
    ],
)
async def test_settings_shape_the_message_and_it_stays_celerys(
    redis_url: str, overrides: dict[str, Any], key: str, rendered: bool, events: bool
) -> None:
    app = create_app(Settings(JOB_QUEUE_URL=redis_url), **overrides)
    set_app(app)
    broker = Broker(redis_url)
    await broker.start()
    try:

        @job(name="publish_fastpath.shaped")
        async def shaped(a: str, *, b: int = 0) -> None: ...

        fast, celery, _ = await _send_both(
            broker,
            lambda job_id: shaped.apply_async(("x'y",), {"b": 2}, job_id=job_id),
            key,
            rendered=rendered,
            events=events,
        )
        _assert_same(fast, celery)
    finally:
        await broker.close()
        set_app(None)


async def test_a_result_url_with_options_keeps_redis_pys_pubsub(redis_url: str) -> None:
    """A result URL with client options (a socket timeout) is waited on through
    redis-py's own pub/sub connection, which honours them."""
    url = redis_url + "?socket_timeout=10"
    app = create_app(Settings(JOB_QUEUE_URL=redis_url, JOB_RESULT_URL=url))
    set_app(app)
    try:

        @job(name="publish_fastpath.echo")
        async def echo(x: int) -> int:
            return x

        with testing.worker(app):
            handles = [await echo.delay(i) for i in range(5)]
            assert await asyncio.gather(*(h.wait(timeout=30) for h in handles)) == list(range(5))
        assert _results.waiter_for(url, app.backend.decode)._target is None
    finally:
        set_app(None)


@pytest.mark.parametrize(
    ("decorated", "options", "key"),
    [
        pytest.param({"queue": "reports", "priority": 7}, {}, "reports\x06\x166", id="job-options"),
        pytest.param({}, {"queue": "other", "priority": 0}, "other", id="send-options"),
        pytest.param({"queue": "reports"}, {"priority": 4}, "reports\x06\x163", id="both"),
    ],
)
async def test_routed_message_is_celerys(
    broker: Broker, decorated: dict[str, Any], options: dict[str, Any], key: str
) -> None:
    @job(**decorated, name="publish_fastpath.routed")
    async def routed(n: int) -> None: ...

    fast, celery, _ = await _send_both(
        broker, lambda job_id: routed.apply_async((3,), job_id=job_id, **options), key
    )
    _assert_same(fast, celery)


def test_fast_argsrepr_is_saferepr() -> None:
    # The template writes argsrepr/kwargsrepr itself for flat arguments.
    template = Template(
        lpush=b"",
        envelope="",
        embed=None,
        publish=(),
        event_envelope=None,
        event_body=None,
        maxlen=1024,
        maxlevels=3,
    )
    values: list[Any] = [
        "",
        "a'b",
        'a"b',
        "a\\'b",
        "new\nline\ttab",
        "\u00e9\U0001f600",
        0,
        -1,
        2**70,
        1.5,
        -0.0,
        float("inf"),
        float("nan"),
        True,
        False,
        None,
        "x" * 1019,
        "x " * 600,
    ]
    cases: list[Any] = [[], {}, *([v] for v in values), values[:-2], {"k": "v", "it's": None}]
    cases += [{f"k{i}": v} for i, v in enumerate(values)]
    cases += [[v, v] for v in values[-2:]]  # near and over the 1024 limit
    for case in cases:
        assert template.repr(case) == saferepr(case, 1024, maxlevels=3), case


async def test_jobs_sent_together_all_arrive_once(redis_app: Any, redis_url: str) -> None:
    """Concurrent delays share writes; each message arrives once, in full."""

    @job(name="publish_fastpath.many")
    async def many(i: int) -> None: ...

    handles = await asyncio.gather(*(many.delay(i) for i in range(300)))
    client = redis.Redis.from_url(redis_url)
    try:
        queued = [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    assert sorted(m["headers"]["id"] for m in queued) == sorted(handles)
    assert sorted(_body(m)[0][0] for m in queued) == list(range(300))


async def test_publish_signal_receivers_run(redis_app: Any) -> None:
    """With a receiver connected the message goes through Celery, which calls it."""

    @job(name="publish_fastpath.watched")
    async def watched(n: int) -> None: ...

    seen: list[Any] = []
    stop = _through_celery(seen)
    after: list[Any] = []

    def after_receiver(headers: Any = None, **_: Any) -> None:
        after.append(headers["id"])

    signals.after_task_publish.connect(after_receiver, weak=False)
    try:
        handle = await watched.delay(1)
    finally:
        stop()
        signals.after_task_publish.disconnect(after_receiver)
    assert [h["id"] for h in seen] == [handle] and after == [handle]


async def test_a_router_that_reads_arguments_is_honoured(redis_url: str) -> None:
    """A task_routes router of the user's own is asked for every message."""

    def by_customer(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        return {"queue": "vip"} if args and args[0] == "vip" else None

    app = create_app(
        Settings(JOB_QUEUE_URL=redis_url),
        task_routes=(by_customer, "zephyr_celery._registry.route_job"),
    )
    set_app(app)
    try:

        @job(name="publish_fastpath.order")
        async def order(customer: str) -> None: ...

        vip = await order.delay("vip")
        plain = await order.delay("someone")
    finally:
        set_app(None)
    client = redis.Redis.from_url(redis_url)
    try:
        assert [json.loads(m)["headers"]["id"] for m in client.lrange("vip", 0, -1)] == [vip]
        assert [json.loads(m)["headers"]["id"] for m in client.lrange("celery", 0, -1)] == [plain]
    finally:
        client.close()


def only_queued_headers(redis_url: str, queue: str) -> dict[str, Any]:
    """The protocol headers of the one message waiting in ``queue``."""
    client = redis.Redis.from_url(redis_url)
    try:
        (raw,) = client.lrange(queue, 0, -1)
    finally:
        client.close()
    headers: dict[str, Any] = json.loads(raw)["headers"]
    return headers


async def test_countdown_goes_through_celery_with_an_eta(redis_app: Any, redis_url: str) -> None:
    @job(name="publish_fastpath.later")
    async def later() -> None: ...

    handle = await later.apply_async(countdown=60)
    headers = only_queued_headers(redis_url, "celery")
    assert headers["id"] == handle
    eta = dt.datetime.fromisoformat(headers["eta"])
    assert 50 < (eta - dt.datetime.now(dt.UTC)).total_seconds() <= 60


def test_a_job_enqueued_by_a_job_keeps_its_lineage(redis_app: Any, redis_url: str) -> None:
    """Celery's root and parent ids: a job sent from a running job goes through Celery."""

    @job(
        queue="children", name="publish_fastpath.child"
    )  # nobody consumes it: the message stays to be read
    async def child() -> None: ...

    @job(name="publish_fastpath.parent")
    def parent() -> str:
        # A sync job runs on the worker's thread, where Celery knows the running task.
        return str(asyncio.run(child.delay()))

    async def run() -> tuple[str, str]:
        handle = await parent.delay()
        return handle, await handle.wait(timeout=30)

    with testing.worker(redis_app):
        parent_id, child_id = asyncio.run(run())
    headers = only_queued_headers(redis_url, "children")
    assert headers["id"] == child_id
    assert headers["parent_id"] == parent_id and headers["root_id"] == parent_id


async def test_a_job_sent_while_the_broker_restarts_gets_through(own_redis: RedisServer) -> None:
    """The connection is lost: the send waits, reconnecting under the retry policy."""
    app = create_app(Settings(JOB_QUEUE_URL=own_redis.url(0)))
    set_app(app)
    try:

        @job(name="publish_fastpath.durable")
        async def durable(n: int) -> None: ...

        first = await durable.delay(1)
        await asyncio.to_thread(own_redis.kill)
        sending = asyncio.ensure_future(durable.delay(2))
        await asyncio.sleep(0.3)
        assert not sending.done()  # waiting for the broker, not failed
        await asyncio.to_thread(own_redis.start)
        second = await asyncio.wait_for(sending, 30)
        third = await durable.delay(3)
    finally:
        set_app(None)
    client = redis.Redis.from_url(own_redis.url(0))
    try:
        ids = [json.loads(m)["headers"]["id"] for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    assert second in ids and third in ids
    assert first != second


def _plain(a: Any, b: Any = 1) -> None: ...
def _starred(a: Any, *rest: Any, k: Any = 2) -> None: ...
def _keyword_needed(a: Any, *, k: Any) -> None: ...
def _positional_only(a: Any, /, b: Any, c: Any = 3) -> None: ...


@pytest.mark.parametrize("fn", [_plain, _starred, _keyword_needed, _positional_only])
def test_wrong_arguments_are_refused_as_binding_would(redis_app: Any, fn: Any) -> None:
    # delay() skips binding for calls with positional arguments only, when their
    # count fits: it must refuse exactly what binding refuses.
    checked = job(name=f"check.{fn.__name__}")(fn)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((1,), {}),
        ((1, 2), {}),
        ((1, 2, 3), {}),
        ((1, 2, 3, 4), {}),
        ((1,), {"k": 1}),
        ((), {"a": 1}),
        ((1,), {"b": 2}),
    ]
    for args, kwargs in calls:
        try:
            inspect.signature(fn).bind(*args, **kwargs)
            binds = True
        except TypeError:
            binds = False
        try:
            checked._check_arguments(args, kwargs)
            accepted = True
        except TypeError:
            accepted = False
        assert accepted == binds, (fn.__name__, args, kwargs)


async def test_a_large_result_arrives_whole(redis_app: Any) -> None:
    """A result published in many socket reads reaches its waiter intact."""

    @job(name="publish_fastpath.big")
    def big(n: int) -> str:
        time.sleep(0.2)  # the wait is subscribed by then: the result comes by pub/sub
        return "".join(chr(65 + i % 26) for i in range(n))

    with testing.worker(redis_app):
        handle = await big.delay(3_000_000)
        result = await handle.wait(timeout=60)
    assert (
        len(result) == 3_000_000 and result[:3] == "ABC" and result[-1] == chr(65 + 2_999_999 % 26)
    )
