"""Job messages built by Celery: routing, lineage and the JSON check of the arguments.

:func:`build` does what ``Celery.send_task`` does before it publishes (route by
``task_routes``, keep a parent job's lineage, ``create_task_message``), without
publishing; :func:`check_json` names the first argument the task serializer cannot
carry, so ``delay()`` fails in the caller with a ``TypeError`` instead of in kombu.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kombu.serialization import dumps as _kombu_dumps
from kombu.utils.uuid import uuid

_dumps: Callable[..., Any] = _kombu_dumps


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
