"""Job messages built by Celery: routing, lineage and the JSON check of the arguments.

:func:`build` does what ``Celery.send_task`` does before it publishes (route by
``task_routes``, keep a parent job's lineage, ``create_task_message``), without
publishing; :func:`check_json` names the first argument the task serializer cannot
carry, so ``delay()`` fails in the caller with a ``TypeError`` instead of in kombu;
:func:`check_containers` names an argument JSON would change or cannot nest.
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


#: Types that need no look inside (checked by ``type(value) in SCALARS``).
SCALARS = frozenset({str, int, float, bool, type(None)})

#: The deepest nesting of lists and dicts an argument may have. JSON's encoder and
#: the worker's decoder recurse once per level: far deeper, encoding raises a
#: RecursionError (or the worker cannot decode what was sent).
MAX_DEPTH = 200


def check_containers(
    job_name: str,
    signature: inspect.Signature,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> None:
    """Raise TypeError naming an argument with a non-string dict key, or nested too deep.

    JSON turns ``{1: "a"}`` into ``{"1": "a"}`` silently: the job would receive
    other keys than were sent. Called only for arguments that are not scalars.
    """
    for arg_name, value in _named(signature, args, kwargs):
        if type(value) in SCALARS:
            continue
        stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
        while stack:
            item, depth, path = stack.pop()
            if isinstance(item, dict):
                children: Any = item.items()
            elif isinstance(item, list | tuple):
                children = enumerate(item)
            else:
                continue
            if depth > MAX_DEPTH:
                raise TypeError(
                    f"job {job_name}: argument {arg_name!r} nests lists and dicts deeper "
                    f"than {MAX_DEPTH} levels (or contains itself); JSON cannot carry it"
                )
            for key, child in children:
                if isinstance(item, dict) and type(key) is not str:
                    where = arg_name + "".join(f"[{step!r}]" for step in path)
                    raise TypeError(
                        f"job {job_name}: argument {arg_name!r} has a dict key {key!r} (a "
                        f"{type(key).__name__}) at {where}; JSON would turn it into the "
                        f"string {str(key)!r}: use string keys"
                    )
                if type(child) not in SCALARS:
                    stack.append((child, depth + 1, (*path, key)))


def _named(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """Each argument with the parameter name it binds to (``#i`` when it does not)."""
    try:
        return list(signature.bind_partial(*args, **kwargs).arguments.items())
    except TypeError:
        return [(f"#{i}", value) for i, value in enumerate(args)] + list(kwargs.items())


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
