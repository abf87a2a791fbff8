"""Background event loops and per-process singletons: one primitive, used by every package.

Three needs recur across the packages: a daemon thread running an asyncio loop forever
(sync callers submit coroutines to it; listeners live on it), an object that must be
rebuilt in a forked child (threads, sockets and loops do not survive ``fork``), and
cancelling a task from another thread on the loop that owns it.

- :class:`LoopThread` is the loop thread.
- :class:`PerProcess` holds one value per process, made on first use and made again
  after a fork (a prefork worker's children each get their own).
- :func:`cancel_on_loop` cancels a task on its own loop and waits for it to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["LoopThread", "PerProcess", "cancel_on_loop"]


class LoopThread:
    """An asyncio event loop running forever on its own daemon thread.

    Args:
        name: The thread's name (shown by py-spy and in thread dumps).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop; the future resolves with its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (blocks the caller).

        Raises:
            RuntimeError: when called from the loop's own thread, which would deadlock.
        """
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError(f"{self.thread.name}: cannot wait on its own loop")
        return self.submit(coro).result(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs, finish async generators, stop and close the loop."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        if self.thread.is_alive():
            try:
                self.submit(shutdown()).result(timeout)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


class PerProcess(Generic[T]):
    """One value per process, made by ``factory`` on first use and again after a fork.

    ``get()`` is cheap on the hot path (a tuple read and a pid comparison against a
    cached pid refreshed at fork), and thread-safe: two threads racing on first use get
    the same value.

    Args:
        factory: Makes the value; called at most once per process (per ``reset``).
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._state: tuple[int, T] | None = None

    def get(self) -> T:
        """This process's value, made now if this process has none yet."""
        state = self._state
        pid = current_pid()
        if state is None or state[0] != pid:
            with self._lock:
                state = self._state
                if state is None or state[0] != pid:
                    state = self._state = (pid, self._factory())
        return state[1]

    def peek(self) -> T | None:
        """This process's value if it was made, without making it."""
        state = self._state
        return state[1] if state is not None and state[0] == current_pid() else None

    def reset(self) -> T | None:
        """Forget this process's value and return it (for the caller to close), if any."""
        with self._lock:
            state, self._state = self._state, None
        return state[1] if state is not None and state[0] == current_pid() else None


_pid = os.getpid()


def _note_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_fork)


def current_pid() -> int:
    """``os.getpid()`` without the system call (cached, refreshed in a forked child)."""
    return _pid


def cancel_on_loop(task: asyncio.Task[Any] | None, timeout: float = 5.0) -> None:
    """Cancel ``task`` on the loop that runs it and wait (up to ``timeout``) until it ends.

    Safe to call from any thread other than the task's own loop thread; a task that is
    done, or whose loop no longer runs, is left alone.
    """
    if task is None or task.done():
        return
    loop = task.get_loop()

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if loop.is_running():
        asyncio.run_coroutine_threadsafe(cancel(), loop).result(timeout)
