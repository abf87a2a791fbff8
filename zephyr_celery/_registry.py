"""The jobs of this process by name, and the Celery router that sends each to its queue.

Every ``@job`` adds itself here at decoration; each is registered as a task on the
process-wide app at once and on any app made later (``create_app``/``set_app``), so a
worker that imports the jobs module knows every job. :func:`route_job` is the app's
``task_routes`` entry: retries, beat, Flower and ``send_task`` get a job's own queue
and priority from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zephyr_celery import _app
from zephyr_core import ConfigError

if TYPE_CHECKING:
    from zephyr_celery._job import Job

_jobs: dict[str, Job[Any, Any]] = {}
_lock = threading.Lock()
#: Called with (app, task) after a job is registered: in-process test workers use it
#: to refresh their consumers' per-task strategies.
registered_hooks: list[Callable[[Any, Any], None]] = []


def origin(fn: Callable[..., Any]) -> str:
    """Where a function was defined: ``module.qualname``."""
    return f"{fn.__module__}.{fn.__qualname__}"


def add(new: Job[Any, Any]) -> None:
    """Record ``new`` under its name and register it on the process-wide app.

    Nothing is recorded when registering fails: a broken entry would make every
    later app (each ``get_app()`` after ``set_app(None)``) fail to register it again.

    Raises:
        ConfigError: Another function already holds the name.
    """
    with _lock:
        _check_free(new)
    app = _app.get_app()
    try:
        new.register(app)
    except BaseException:
        if getattr(app.tasks.get(new.name), "zephyr_job", None) is new:
            app.tasks.unregister(new.name)
        raise
    with _lock:
        _check_free(new)  # (another thread may have taken the name meanwhile)
        _jobs[new.name] = new


def _check_free(new: Job[Any, Any]) -> None:
    old = _jobs.get(new.name)
    # The same function defined again (a module reloaded, a test run twice)
    # replaces its earlier self; two different functions may not share a name.
    if old is not None and origin(old.fn) != origin(new.fn):
        raise ConfigError(
            f"job name {new.name!r} is taken: {origin(new.fn)} collides with "
            f"{origin(old.fn)}; pass @job(name=...) to tell them apart",
            field="name",
        )


def lookup(name: str) -> Job[Any, Any] | None:
    """The job registered under ``name``, if any."""
    return _jobs.get(name)


def registered_jobs() -> dict[str, Job[Any, Any]]:
    """Every job defined in this process, by name."""
    return dict(_jobs)


def _register_all(app: Any) -> None:
    for known in list(_jobs.values()):
        known.register(app)


_app.on_app(_register_all)


def route_job(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **extra: Any
) -> dict[str, Any] | None:
    """Celery router (``task_routes``): a job's own queue and priority.

    Used by every send that does not go through :class:`Job` (retries, beat, Flower,
    ``send_task``); options given with the send still win.
    """
    found = _jobs.get(name)
    if found is None:
        return None
    route = {"queue": found.queue, "priority": found.priority}
    return {key: value for key, value in route.items() if value is not None} or None
