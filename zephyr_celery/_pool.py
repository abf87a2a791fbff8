"""The async pool: a Celery execution pool that runs async jobs as coroutines.

Celery's worker stays Celery's (consumer, QoS, acks, events, remote control, rate
limits, retries); only the execution pool changes, through Celery's own extension
point (``worker_pool``, a :class:`celery.concurrency.base.BasePool`). Prefork hands
each job to a child process that runs one job at a time; this pool runs up to
``limit`` async jobs at once as tasks on the worker process's long-lived event loop
(:func:`zephyr_celery._runner.process_loop`), so jobs that wait on I/O overlap.

A job goes through three steps on the loop thread: its coroutine (with its
``timeout``, which cancels it); then Celery's tracer, synchronously, with the
outcome handed to the task body (:func:`zephyr_celery._runner.set_outcome`): the
tracer stores the result, raises ``Retry`` and records the failure as on any pool;
then, for all the jobs that finished in the same turn of the loop, one pipelined
round trip stores their results (our Redis backend's ``defer``) before the request's
callbacks run (acks, task events). Prefork children and the threads pool pay one
blocking round trip per job for the result.

Sync jobs and plain Celery tasks run on a thread pool beside the loop.

What the worker's controls do here:

- revoke with ``terminate=True`` cancels the job's coroutine (Celery marks it
  revoked and acknowledges it); a job revoked (with or without terminate) while it
  waits for a slot never starts.
- warm shutdown (SIGTERM): jobs waiting for a slot are dropped unacknowledged (the
  broker returns them), running ones finish.
- cold shutdown: running jobs are cancelled, unacknowledged (returned to the queue).

Private internals used:

- ``celery.app.trace.loads_message``
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery.app.trace import loads_message
from celery.concurrency.base import BasePool, apply_target
from celery.exceptions import WorkerShutdown, WorkerTerminate
from kombu.serialization import prepare_accept_content

from zephyr_celery._loop_watch import LoopWatch
from zephyr_celery._redis.backend import RedisBackend
from zephyr_celery._runner import Outcome, process_loop, set_outcome, with_timeout

logger = logging.getLogger("zephyr_celery")

#: Async jobs one worker process runs at once unless told (``-c``): sized for jobs
#: that mostly wait on I/O.
DEFAULT_ASYNC_CONCURRENCY = 100

#: Threads that run sync jobs beside the loop.
DEFAULT_SYNC_THREADS = 8


class _Entry:
    """One async job handed to the pool: what Celery passed, and its asyncio task.

    It is what :meth:`AsyncPool.apply_async` returns: Celery's request keeps a weak
    reference to it and calls :meth:`terminate` to revoke with ``terminate=True``.
    """

    __slots__ = (
        "__weakref__", "accept", "args", "callback", "finished", "fn", "kwargs", "loop", "name",
        "target", "task", "terminated", "timeout",
    )  # fmt: skip

    def __init__(
        self,
        fn: Callable[..., Any],
        timeout: float | None,
        target: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        callback: Callable[..., Any],
        accept: Callable[..., Any] | None,
    ) -> None:
        self.fn, self.timeout, self.target = fn, timeout, target
        self.args, self.kwargs = args, kwargs
        self.callback, self.accept = callback, accept
        self.name = f"{args[0]}[{args[1]}]"
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.terminated = False
        self.finished = False  # its callback waits for the next _flush

    def terminate(self, signal: Any = None) -> None:
        """Cancel the job's coroutine; one not started yet never starts."""
        self.terminated = True
        if self.loop is not None and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)


class AsyncPool(BasePool):  # type: ignore[misc]
    """Runs async jobs as concurrent coroutines on this process's event loop.

    Select it with ``worker_pool="zephyr_celery:AsyncPool"`` (``zephyr jobs worker``
    does by default). ``limit`` (the worker's ``--concurrency``) is how many async
    jobs run at once; more received wait for a slot, unacknowledged.
    """

    signal_safe = True
    is_green = False
    # Celery's banner names the pool by its module: "concurrency: 100 (zephyr_celery)".
    __module__ = "zephyr_celery"
    # A job waiting on another's result would block every job of the loop.
    task_join_will_block = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = int(vars(self).get("limit") or DEFAULT_ASYNC_CONCURRENCY)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.watch: LoopWatch | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._accept: set[str] | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inbox: collections.deque[_Entry] = collections.deque()
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._running: set[_Entry] = set()
        self._wakeup_due = False
        self._closing = False
        # Results and callbacks of the jobs finished in this turn of the loop (_flush).
        self._stores: list[tuple[bytes, Any, int, tuple[Any, ...]]] = []
        self._finished: list[tuple[_Entry, Any]] = []
        self._flush_due = False

    # -- lifecycle ---------------------------------------------------------------

    def on_start(self) -> None:
        loop_thread = process_loop()
        self.loop = loop_thread.loop
        self._threads = ThreadPoolExecutor(DEFAULT_SYNC_THREADS, thread_name_prefix="zephyr-sync")
        self._accept = prepare_accept_content(self.app.conf.accept_content)  # type: ignore[no-untyped-call]
        self.watch = LoopWatch(self.loop)
        self.watch.start()

    def did_start_ok(self) -> bool:
        return self.loop is not None and not self.loop.is_closed()

    def on_stop(self) -> None:
        """Warm shutdown: drop jobs not started (the broker returns them); wait for the rest."""
        with self._lock:
            self._closing = True
            dropped = len(self._inbox) + len(self._waiting)
            self._inbox.clear()
            self._waiting.clear()
            while self._running:
                self._idle.wait(1.0)
        if dropped:
            logger.info("async pool: %d jobs not started go back to the queue", dropped)
        self._stop_threads(wait=True)

    def on_terminate(self) -> None:
        """Cold shutdown: cancel running jobs; they stay unacknowledged (requeued)."""
        with self._lock:
            self._closing = True
            self._inbox.clear()
            self._waiting.clear()
            running = list(self._running)
        for entry in running:
            entry.terminated = True
            if self.loop is not None and entry.task is not None:
                self.loop.call_soon_threadsafe(entry.task.cancel)
        with self._lock:
            deadline = time.monotonic() + 5
            while self._running and time.monotonic() < deadline:
                self._idle.wait(0.2)
        self._stop_threads(wait=False)

    def _stop_threads(self, wait: bool) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self._threads is not None:
            self._threads.shutdown(wait=wait, cancel_futures=not wait)

    def terminate_job(self, pid: int, signal: Any = None) -> None:
        # Every job runs in this process: the request's _Entry.terminate cancels
        # the one meant (Request.terminate calls both).
        return None

    def restart(self) -> None:  # pool_restart: nothing to re-import in children
        return None

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update(
            {
                "max-concurrency": self.limit,
                "running": len(self._running),
                "waiting": len(self._waiting) + len(self._inbox),
                "processes": [os.getpid()],
                "longest-loop-block": self.watch.longest if self.watch else 0.0,
            }
        )
        return info

    @property
    def num_processes(self) -> int:
        return int(self.limit)

    # -- running jobs ------------------------------------------------------------

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **options: Any,
    ) -> _Entry | None:
        args = tuple(args or ())
        kwargs = kwargs or {}
        task = self.app.tasks.get(args[0]) if args else None
        job = getattr(task, "zephyr_job", None)
        if job is None or not job.is_async or callback is None:
            # Sync jobs and plain Celery tasks: a thread, as Celery's threads pool does.
            assert self._threads is not None
            self._threads.submit(
                apply_target, target, args, kwargs, callback, accept_callback, **options
            )
            return None  # Request.terminate: a thread cannot be stopped
        entry = _Entry(job.fn, job.timeout, target, args, kwargs, callback, accept_callback)
        entry.loop = self.loop
        with self._lock:
            if self._closing:
                return entry  # never accepted: the broker returns it
            self._inbox.append(entry)
            wake = not self._wakeup_due
            self._wakeup_due = True
        if wake:  # one wake-up for a burst of messages
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._admit)
        return entry

    def _admit(self) -> None:
        """On the loop: start received jobs while there are free slots."""
        assert self.loop is not None
        with self._lock:
            self._wakeup_due = False
            self._waiting.extend(self._inbox)
            self._inbox.clear()
            starting = []
            while self._waiting and len(self._running) < self.limit:
                entry = self._waiting.popleft()
                self._running.add(entry)
                starting.append(entry)
        for entry in starting:
            entry.task = self.loop.create_task(self._run(entry), name=entry.name)

    async def _run(self, entry: _Entry) -> None:
        try:
            await self._run_job(entry)
        except asyncio.CancelledError:
            if not entry.terminated:
                raise
        except Exception:
            logger.exception("async pool: job %s could not be run", entry.name)
        finally:
            if not entry.finished:
                self._release(entry)

    def _release(self, entry: _Entry) -> None:
        """The job's slot is free (its callbacks have run): start the next one."""
        with self._lock:
            self._running.discard(entry)
            if not self._running:
                self._idle.notify_all()
        if self._waiting:
            self._admit()

    async def _run_job(self, entry: _Entry) -> None:
        request = getattr(entry.callback, "__self__", None)  # Celery's Request
        if request is not None and not entry.terminated and request.revoked():
            return  # revoked while it waited for a slot: Celery marked and acked it
        if entry.accept is not None:  # task-started, and the ack if not acks_late
            entry.accept(os.getpid(), time.monotonic())
        if entry.terminated:  # terminated while it waited: Celery revoked it on accept
            return
        name, task_id, request, body, content_type, encoding = entry.args[:6]
        if content_type:
            args, kwargs, embed = loads_message(body, content_type, encoding, accept=self._accept)
        else:
            args, kwargs, embed = body
        started = time.monotonic()
        try:
            coro = entry.fn(*args, **kwargs)
            if entry.timeout is not None:
                coro = with_timeout(coro, entry.timeout)
            outcome = Outcome(value=await coro)
        except asyncio.CancelledError:
            if entry.terminated:
                raise
            outcome = Outcome(error=asyncio.CancelledError("the job was cancelled"))
        except Exception as exc:  # the task body retries or records it, as on any pool
            outcome = Outcome(error=exc)
        decoded = (name, task_id, request, (args, kwargs, embed), None, None)
        ran = time.monotonic() - started

        def trace() -> Any:
            # The tracer times only itself: add the coroutine's time to the runtime
            # Celery logs and sends in task-succeeded.
            flag, value, runtime = entry.target(*decoded, **entry.kwargs)
            return flag, value, (runtime + ran if runtime is not None else None)

        backend = self.app.backend  # this thread's (Celery keeps one per thread)
        set_outcome(outcome)
        try:
            if isinstance(backend, RedisBackend):
                with backend.defer(self._stores):
                    ret = self._trace(trace)
            else:
                ret = self._trace(trace)
        finally:
            set_outcome(None)
            del outcome
        if ret is not None:
            # Acks and task events once the result is stored: after the batch.
            entry.finished = True
            self._finished.append((entry, ret))
            if not self._flush_due:
                self._flush_due = True
                asyncio.get_running_loop().call_soon(self._flush)

    @staticmethod
    def _trace(trace: Callable[[], Any]) -> Any:
        """Celery's tracer, with apply_target's handling of what escapes it."""
        try:
            return trace()
        except (WorkerShutdown, WorkerTerminate):
            raise
        except Exception:
            raise
        except BaseException as exc:  # like apply_target: the job's worker is "lost"
            try:
                raise WorkerLostError(repr(exc)) from exc
            except WorkerLostError:
                return (1, ExceptionInfo(), None)

    def _flush(self) -> None:
        """On the loop: store the results of the jobs that just finished, in one round
        trip, then run their callbacks (acks_late acks, task-succeeded events)."""
        self._flush_due = False
        stores, self._stores = self._stores, []
        finished, self._finished = self._finished, []
        if stores:
            backend = self.app.backend
            try:
                backend.store_deferred(stores)
            except Exception:
                logger.exception("async pool: storing %d results failed", len(stores))
        for entry, ret in finished:
            try:
                entry.callback(ret)
            except Exception:
                logger.exception("async pool: the completion of job %s failed", entry.name)
            finally:
                self._release(entry)


__all__ = ["DEFAULT_ASYNC_CONCURRENCY", "DEFAULT_SYNC_THREADS", "AsyncPool"]
