"""Sending job messages: Celery's own message format and routing, without its stalls.

``Task.apply_async`` would do here what it always does (route, build the message,
publish it) plus two things we avoid: it blocks the calling thread on the broker
(the event loop, for an ``async def`` caller), and the Redis result backend
subscribes to every job's result channel on the way (a round trip per job, and a
subscription nobody reads unless ``AsyncResult.get`` is called).

This module chooses the path of each message:

- async callers on a plain Redis broker: the message is rendered from its route's
  template (:mod:`zephyr_celery._redis.templates`), or built by Celery when the
  template does not apply, and sent from the event loop by
  :mod:`zephyr_celery._redis.publisher`;
- async callers on any other broker (RabbitMQ): built by Celery and handed to the
  process's publisher thread (:mod:`zephyr_celery._publisher_thread`);
- synchronous callers (``delay_sync``): built and published in the calling thread.

On a Sentinel broker the event-loop publisher sends to the current master and
follows fail-overs (see :mod:`zephyr_celery._redis.publisher`); Celery's path
follows them through kombu's client. With JOB_ENQUEUE_REPLICAS every path ends the
message with a Redis WAIT (:mod:`zephyr_celery._redis.replicas`) and raises
:class:`~zephyr_celery._redis.replicas.NotReplicatedError` when too few replicas
confirm it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from celery import signals

from zephyr_celery._exceptions import BROKER_ERRORS, JobError, enqueue_error, map_broker_errors
from zephyr_celery._messages import build, check_json
from zephyr_celery._publisher_thread import Outgoing, publisher_for
from zephyr_celery._redis import publisher as _redis_publish
from zephyr_celery._redis import replicas as _replicas
from zephyr_celery._redis.templates import Commands, new_id
from zephyr_celery._registry import route_job


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
    :mod:`zephyr_celery._redis.templates`); any other goes through Celery: a delay
    (countdown, eta), a job enqueued by a running job (lineage headers), publish
    signal receivers (Celery calls them), other routers than ours, or a route whose
    template did not reproduce Celery's output.

    Args:
        route: What ``route_job`` would route ``name`` by (the registered job's queue
            and priority): part of the template's key with ``queue`` and ``priority``.

    Raises:
        TypeError: An argument cannot travel as JSON (nothing is sent).
        ValueError: A negative countdown.
        EnqueueError: The broker cannot be reached or refused the message, on any
            path (its ``job_id`` is the job's when one was chosen).
        NotReplicatedError: JOB_ENQUEUE_REPLICAS: the job is queued on the master,
            but too few replicas confirmed it (an EnqueueError with the job's id).
    """
    if countdown is not None and countdown < 0:
        raise ValueError(f"countdown={countdown!r}: must be >= 0 seconds")
    # Broker errors become EnqueueError here, for every path below (a try costs
    # nothing until something is raised).
    sent_id = job_id  # the id of the message being sent, once it has one
    try:
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
                task_id = sent_id = job_id = job_id or new_id()
                try:
                    packed = template.render(
                        task_id, args, kwargs, app.thread_oid, app.clock.forward
                    )
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
        sent_id = task_id
        await send_async(app, name, message, routed)
        return task_id
    except JobError:
        raise
    except _replicas.ReplicaShortfall as shortfall:
        raise _replicas.NotReplicatedError(
            shortfall, job_name=name, broker_url=str(app.conf.broker_url), job_id=sent_id
        ) from None
    except BROKER_ERRORS as exc:
        raise enqueue_error(
            exc, job_name=name, broker_url=str(app.conf.broker_url), job_id=job_id
        ) from exc


#: The router ``create_app`` configures (``task_routes``): it routes by job name only.
_OUR_ROUTER = "zephyr_celery._registry.route_job"


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
    return all(route == _OUR_ROUTER or route is route_job for route in routes)


def send_now(app: Any, name: str, message: Any, options: dict[str, Any]) -> None:
    """Publish from the calling thread (synchronous callers).

    Raises:
        EnqueueError: The broker cannot be reached or refused the message.
        NotReplicatedError: JOB_ENQUEUE_REPLICAS: queued, but too few replicas confirmed.
    """
    try:
        with (
            map_broker_errors(name, str(app.conf.broker_url)),
            app.producer_or_acquire() as producer,
        ):
            if _replicas.for_app(app).count:
                _replicas.publish(app, producer, [(name, message, options)])
            else:
                app.amqp.send_task_message(producer, name, message, **options)
    except _replicas.ReplicaShortfall as shortfall:
        raise _replicas.NotReplicatedError(
            shortfall,
            job_name=name,
            broker_url=str(app.conf.broker_url),
            job_id=_message_id(message),
        ) from None


def _message_id(message: Any) -> str | None:
    """The job id of a message Celery built (protocol 2: in its headers)."""
    headers = getattr(message, "headers", None) or {}
    found = headers.get("id")
    return None if found is None else str(found)


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
