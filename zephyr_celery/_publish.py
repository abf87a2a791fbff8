"""Sending job messages: Celery's own message format and routing, without its stalls.

``Task.apply_async`` would do here what it always does (route, build the message,
publish it) plus two things we avoid: it blocks the calling thread on the broker
(the event loop, for an ``async def`` caller), and the Redis result backend
subscribes to every job's result channel on the way (a round trip per job, and a
subscription nobody reads unless ``AsyncResult.get`` is called).

So the message is built in the caller with Celery's ``create_task_message`` and
handed to one publisher thread per process, which sends whatever has queued up
since its last pass through ``send_task_message`` inside a kombu producer batch:
on Redis a single pipelined round trip for many jobs, on RabbitMQ plain publishes.
The awaiting caller resumes when its message is on the broker.

Async callers on a Redis broker skip the thread: :func:`enqueue` renders the
message from a per-route template checked against Celery's own output, or has
Celery build it, and sends it from the event loop (:mod:`zephyr_celery._redis_publish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import signals
from kombu.serialization import dumps as _kombu_dumps
from kombu.utils.uuid import uuid

from zephyr_celery import _redis_publish
from zephyr_celery._redis_message import Commands, new_id

_dumps: Callable[..., Any] = _kombu_dumps

# Messages sent in one batch at most (one pipeline on Redis).
_BATCH = 500


@dataclass(slots=True)
class Outgoing:
    """A built message waiting for the publisher thread."""

    name: str
    message: Any
    options: dict[str, Any]
    done: Callable[[BaseException | None], None]


def check_json(
    app: Any,
    signature: inspect.Signature,
    job_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> None:
    """Raise TypeError naming the first argument the task serializer cannot carry."""
    serializer = app.conf.task_serializer
    try:
        _dumps([list(args), dict(kwargs)], serializer=serializer)
        return
    except Exception as exc:
        failure: BaseException = exc
    try:
        bound = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = {f"#{i}": value for i, value in enumerate(args)} | dict(kwargs)
    for arg_name, value in bound.items():
        try:
            _dumps(value, serializer=serializer)
        except Exception:
            raise TypeError(
                f"job {job_name}: argument {arg_name!r} = {_short_repr(value)} cannot be sent "
                f"as {serializer.upper()} (a {type(value).__name__}); pass str, int, float, "
                "bool, None, lists and dicts of those (or an id to load it from)"
            ) from failure
    raise TypeError(f"job {job_name}: arguments cannot be sent as {serializer}") from failure


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def build(
    app: Any,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    task_id: str | None = None,
    countdown: float | None = None,
    eta: Any = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[str, Any, dict[str, Any]]:
    """Route and build one task message as ``Celery.send_task`` does.

    Returns:
        The job id, the message and the options ``send_task_message`` takes.
    """
    task_id = task_id or uuid()
    amqp = app.amqp
    routed = amqp.router.route(
        {k: v for k, v in (options or {}).items() if v is not None}, name, args, kwargs
    )
    root_id = parent_id = None
    parent = app.current_worker_task
    if parent is not None:  # a job enqueued by a job: keep Celery's lineage
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
    message = amqp.create_task_message(
        task_id,
        name,
        list(args),
        dict(kwargs),
        countdown=countdown,
        eta=eta,
        reply_to=app.thread_oid,
        create_sent_event=app.conf.task_send_sent_event,
        root_id=root_id,
        parent_id=parent_id,
        **routed,
    )
    return task_id, message, routed


async def enqueue(
    app: Any,
    name: str,
    signature: inspect.Signature,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    queue: str | None,
    priority: int | None,
    route: Hashable,
    job_id: str | None = None,
    countdown: float | None = None,
    eta: Any = None,
) -> str:
    """Check, build and send one job message from a coroutine; return the job id.

    On a Redis broker, a message Celery would send unchanged by anything but its
    arguments and ids is rendered from its route's template (see
    :mod:`zephyr_celery._redis_message`); any other goes through Celery: a delay
    (countdown, eta), a job enqueued by a running job (lineage headers), publish
    signal receivers (Celery calls them), other routers than ours, or a route whose
    template did not reproduce Celery's output.

    Args:
        route: What ``route_job`` would route ``name`` by (the registered job's queue
            and priority): part of the template's key with ``queue`` and ``priority``.

    Raises:
        TypeError: An argument cannot travel as JSON (nothing is sent).
        ValueError: A negative countdown.
    """
    if countdown is not None and countdown < 0:
        raise ValueError(f"countdown={countdown!r}: must be >= 0 seconds")
    options = {"queue": queue, "priority": priority}
    publisher = _redis_publish.current(app)
    if publisher is None and _redis_publish.eligible(app):
        publisher = await _redis_publish.publisher_for(app)
    if (
        publisher is not None
        and countdown is None
        and eta is None
        and (job_id is None or type(job_id) is str)
        and _plain_send(app)
    ):
        found = publisher
        router = app.amqp.router  # replaced by Celery when task_routes changes
        template = found.template(
            (name, queue, priority, route, router),
            lambda sample_args, sample_kwargs, sample_id: _sample(
                found, app, router, name, options, sample_args, sample_kwargs, sample_id
            ),
        )
        if template is not None:
            task_id = job_id or new_id()
            try:
                packed = template.render(task_id, args, kwargs, app.thread_oid, app.clock.forward)
            except Exception:
                # Not JSON: name the argument. (Should the arguments be fine after
                # all, Celery's path below builds the message.)
                check_json(app, signature, name, args, kwargs)
            else:
                await found.send_packed(packed, template.replies)
                return task_id
    check_json(app, signature, name, args, kwargs)
    task_id, message, routed = build(
        app,
        name,
        args,
        kwargs,
        task_id=job_id,
        countdown=countdown,
        eta=eta,
        options=options,
    )
    await send_async(app, name, message, routed)
    return task_id


#: The router ``create_app`` configures (``task_routes``): it routes by job name only.
_OUR_ROUTER = "zephyr_celery._job.route_job"


def _plain_send(app: Any) -> bool:
    """Whether sending now involves nothing but the message (checked per message)."""
    return (
        not signals.before_task_publish.receivers
        and not signals.after_task_publish.receivers
        and not signals.task_sent.receivers
        and app.current_worker_task is None
    )


def _sample(
    publisher: _redis_publish.RedisPublisher,
    app: Any,
    router: Any,
    name: str,
    options: dict[str, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    task_id: str,
) -> Commands:
    """Celery's commands for one message of this route (for making its template)."""
    if not _routes_by_name_only(app) or router is not app.amqp.router:
        return []  # a router may look at the arguments: no template
    _, message, routed = build(app, name, args, kwargs, task_id=task_id, options=options)
    commands: Commands = publisher.commands_for(name, message, routed)
    return commands


def _routes_by_name_only(app: Any) -> bool:
    routes = app.conf.task_routes
    if routes is None:
        return True
    if isinstance(routes, str) or not isinstance(routes, list | tuple):
        routes = (routes,)
    from zephyr_celery._job import route_job

    return all(route == _OUR_ROUTER or route is route_job for route in routes)


def send_now(app: Any, name: str, message: Any, options: dict[str, Any]) -> None:
    """Publish from the calling thread (synchronous callers)."""
    with app.producer_or_acquire() as producer:
        app.amqp.send_task_message(producer, name, message, **options)


class Publisher:
    """One thread that publishes every message an app's async callers enqueue."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._queue: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="zephyr-jobs-publisher", daemon=True)
        self._thread.start()

    def submit(self, item: Outgoing) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            error = self._send(batch)
            for item in batch:
                item.done(error)

    def _send(self, batch: list[Outgoing]) -> BaseException | None:
        send = self.app.amqp.send_task_message
        try:
            with self.app.producer_or_acquire() as producer:
                if len(batch) == 1:
                    send(producer, batch[0].name, batch[0].message, **batch[0].options)
                else:
                    with producer.batch(max_size=2 * _BATCH + 2):
                        for item in batch:
                            send(producer, item.name, item.message, **item.options)
            return None
        except Exception:
            pass
        # The batch failed as a whole (the broker went away mid-way, say): send each
        # message on its own, with Celery's publish retry policy reconnecting. A
        # message the failed pipeline did deliver is then sent twice: at-least-once.
        try:
            with self.app.producer_or_acquire() as producer:
                for item in batch:
                    send(producer, item.name, item.message, **item.options)
            return None
        except Exception as exc:
            return exc


_lock = threading.Lock()
_publishers: dict[int, tuple[int, Publisher]] = {}


def publisher_for(app: Any) -> Publisher:
    """The publisher thread of ``app`` in this process (started on first use)."""
    key = id(app)
    found = _publishers.get(key)
    if found is None or found[0] != os.getpid() or found[1].app is not app:
        with _lock:
            found = _publishers.get(key)
            if found is None or found[0] != os.getpid() or found[1].app is not app:
                found = _publishers[key] = (os.getpid(), Publisher(app))
    return found[1]


async def send_async(app: Any, name: str, message: Any, options: dict[str, Any]) -> None:
    """Publish from a coroutine: the loop keeps running until the broker has it."""
    if _redis_publish.eligible(app):
        publisher = await _redis_publish.publisher_for(app)
        await publisher.send(name, message, options)
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def done(error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop closed meanwhile
            loop.call_soon_threadsafe(settle, error)

    publisher_for(app).submit(Outgoing(name, message, options, done))
    await future
