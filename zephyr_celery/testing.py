"""Testing helpers: an in-process worker on the real broker, and fast retries.

Example:
    >>> from zephyr_celery import job, testing
    >>> with testing.worker():
    ...     handle = add.delay_sync(1, 2)

Jobs defined inside a test (closures reading the test's variables) run in the
worker, because the worker runs in this process: it consumes from the real broker
in a thread, and async jobs run on the process's job event loop.

Private internals used:

- ``celery.Celery._get_backend``
- ``celery.backends.redis.ResultConsumer._pubsub``
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker

from zephyr_celery import _registry, _task
from zephyr_celery._app import get_app

__all__ = ["InProcessWorker", "set_testing", "testing_enabled", "using_app", "worker"]

_testing_lock = threading.Lock()


def set_testing(on: bool, *, retry_delay: float = 0.0) -> None:
    """Replace every retry delay of this process's workers by ``retry_delay`` seconds.

    Like ``stamina.set_testing``: retries still happen, as many as each job allows,
    only without the wait. ``set_testing(False)`` restores the jobs' own delays.
    """
    if retry_delay < 0:
        raise ValueError(f"retry_delay={retry_delay!r}: must be >= 0 seconds")
    _task.set_testing_delay(retry_delay if on else None)


def testing_enabled() -> bool:
    """Whether :func:`set_testing` is on."""
    return _task._testing_delay is not None


class InProcessWorker(AbstractContextManager["InProcessWorker"]):
    """A Celery worker running in a thread of this process (use :func:`worker`).

    Attributes:
        app: The app whose jobs it runs.
        controller: Celery's ``WorkController``, once started.
    """

    def __init__(
        self,
        app: Celery | None,
        *,
        pool: str,
        concurrency: int,
        queues: list[str] | None,
        fast_retries: bool,
        loglevel: str,
    ) -> None:
        self.app = app
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues
        self.fast_retries = fast_retries
        self.loglevel = loglevel
        self.controller: Any = None
        self._context: AbstractContextManager[Any] | None = None
        self._previous_delay: float | None = None
        self._backends: list[Any] = []
        self._restore_backend_factory: Any = lambda: None

    def start(self) -> InProcessWorker:
        """Start consuming; returns once the worker is ready."""
        app = self.app or get_app()
        self.app = app
        if self.fast_retries:
            self._previous_delay = _task._testing_delay
            _task.set_testing_delay(0.0)
        if str(app.conf.broker_url or "").startswith(("amqp", "pyamqp")):
            # With AMQP heartbeats the worker's loop wakes every ~10 s to see it
            # should stop; a worker living for one test has no use for them.
            app.conf.broker_heartbeat = 0
        options: dict[str, Any] = {}
        if self.queues:
            options["queues"] = self.queues
        self._context = start_worker(
            app,
            pool=self.pool,
            concurrency=self.concurrency,
            loglevel=self.loglevel,
            perform_ping_check=False,
            shutdown_timeout=30.0,
            **options,
        )
        self._record_backends(app)
        self.controller = self._context.__enter__()
        _registry.registered_hooks.append(self._on_register)
        return self

    def _record_backends(self, app: Celery) -> None:
        # Celery keeps one result backend per thread: the worker thread's (and any
        # other made meanwhile) would outlive the worker with its Redis sockets open,
        # for the garbage collector to close. Each one made while the worker runs is
        # noted here and closed in stop(); closing only drops idle connections, so a
        # backend still in use elsewhere reconnects on its next call.
        self._backends = []
        make = app._get_backend

        def recorded() -> Any:
            backend = make()
            self._backends.append(backend)
            return backend

        app._get_backend = recorded
        self._restore_backend_factory = lambda: vars(app).pop("_get_backend", None)

    def _close_backends(self) -> None:
        self._restore_backend_factory()
        for backend in self._backends:
            # A job's retry sends its next attempt with Celery's apply_async, whose
            # Redis backend subscribes to that attempt's result in a worker thread
            # (unlike prefork children). The AsyncResult it returns unsubscribes
            # when garbage collected, reconnecting for 20 s to a Redis that may be
            # gone by then: drop those subscriptions while the worker stops.
            consumer = getattr(backend, "__dict__", {}).get("result_consumer")
            if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
                consumer.subscribed_to.clear()
                consumer.stop()
                consumer._pubsub = None
            client = getattr(backend, "__dict__", {}).get("client")
            if client is not None:
                client.close()
                client.connection_pool.disconnect()
        self._backends = []

    def _on_register(self, app: Any, task: Any) -> None:
        # The consumer built one strategy per task when it started; a job defined
        # afterwards (inside a test) needs its own before its first message lands.
        consumer = getattr(self.controller, "consumer", None)
        if app is self.app and consumer is not None and consumer.strategies is not None:
            consumer.update_strategies()

    def stop(self) -> None:
        """Stop consuming and wait for the worker thread to end."""
        if self._on_register in _registry.registered_hooks:
            _registry.registered_hooks.remove(self._on_register)
        context, self._context = self._context, None
        try:
            if context is not None:
                context.__exit__(None, None, None)
        finally:
            self._close_backends()
            if self.fast_retries:
                _task.set_testing_delay(self._previous_delay)

    def __enter__(self) -> InProcessWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> InProcessWorker:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def worker(
    app: Celery | None = None,
    *,
    pool: str = "solo",
    concurrency: int = 1,
    queues: list[str] | None = None,
    fast_retries: bool = True,
    loglevel: str = "WARNING",
) -> InProcessWorker:
    """An in-process worker on the real broker, as a context manager (sync or async).

    Args:
        app: The app to run (default: the process-wide one, :func:`get_app`).
        pool: Celery pool: ``"solo"`` (one job at a time) or ``"threads"``.
        concurrency: Threads of the ``threads`` pool.
        queues: Queues to consume (default: Celery's default queue).
        fast_retries: Retry failed jobs without their delays while it runs.
        loglevel: The worker's log level.

    Only one in-process worker should run at a time (Celery's stop flag is global).
    """
    return InProcessWorker(
        app,
        pool=pool,
        concurrency=concurrency,
        queues=queues,
        fast_retries=fast_retries,
        loglevel=loglevel,
    )


@contextmanager
def using_app(app: Celery) -> Iterator[Celery]:
    """Make ``app`` the process-wide app for a block, then restore the previous one."""
    from zephyr_celery import _app

    previous = _app._app
    _app.set_app(app)
    try:
        yield app
    finally:
        _app.set_app(previous)
