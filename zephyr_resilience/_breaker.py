"""CircuitBreaker: pybreaker's state machine, for async and sync callables.

pybreaker decides: its states (closed, open, half-open), its failure and success
counters, its listeners. What this module adds around it:

- **async callables.** pybreaker's decorator on an ``async def`` returns the coroutine
  un-awaited and counts that as a success, so the breaker never opens; its own async
  path needs Tornado. We await the call ourselves and report the outcome to the state
  object pybreaker holds, through the same two hooks its synchronous ``call`` uses.
  No ``calling()`` generator on the hot path: it costs about twice the call itself.
- **an injected clock** for the open -> half-open move (pybreaker reads
  ``datetime.now``, which a test cannot move).
- **half_open_max_calls**: at most that many trial calls at once while half-open;
  pybreaker lets every call through.
- ``expected_exception`` as a type, a tuple or a predicate, and ``exclude``; both
  become one pybreaker exclusion predicate, so an exception that does not count passes
  through and counts as pybreaker counts it (a success: it resets the failure count).
- state shared between processes through Redis without blocking the loop
  (:mod:`zephyr_resilience._breaker_redis`), logs and Prometheus metrics.

Private internals used:
- ``pybreaker.CircuitBreaker._lock``
- ``pybreaker.CircuitBreaker._state_storage``
- ``pybreaker.CircuitBreakerState._handle_error``
- ``pybreaker.CircuitBreakerState._handle_success``
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import pybreaker

from zephyr_core import ConfigError
from zephyr_resilience._exceptions import CircuitBreakerError
from zephyr_resilience._metrics import BREAKER_TRANSITIONS, BREAKERS

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("zephyr_resilience.breaker")

#: What counts as a failure: an exception type, a tuple of them, or a predicate.
ExceptionSpec = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

_unnamed = itertools.count(1)


def _matcher(spec: ExceptionSpec, field: str) -> Callable[[BaseException], bool]:
    if isinstance(spec, type) and issubclass(spec, BaseException):
        return lambda exc: isinstance(exc, spec)
    if isinstance(spec, tuple) and all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in spec
    ):
        return lambda exc: isinstance(exc, spec)
    if callable(spec) and not isinstance(spec, type | tuple):
        return lambda exc: bool(spec(exc))
    raise ConfigError(
        f"{field}={spec!r}: expected an exception class, a tuple of them, "
        "or a predicate taking the exception",
        field=field,
    )


def _number(field: str, value: Any, *, minimum: float, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{field}={value!r}: expected {what} >= {minimum:g}", field=field)


class _Events(pybreaker.CircuitBreakerListener):
    """pybreaker's listener: logs, metrics and the shared state follow each transition."""

    def __init__(self, owner: CircuitBreaker) -> None:
        self.owner = owner

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        self.owner._changed(old.name if old is not None else None, new.name)


class CircuitBreaker:
    """Fail fast while a dependency is failing, on pybreaker's state machine.

    Use it as a decorator on ``async def`` or plain functions, or as an (async) context
    manager around a block. ``failure_threshold`` consecutive failures open it; while
    open every call raises :class:`CircuitBreakerError` at once, without calling;
    after ``recovery_timeout`` seconds it half-opens and lets up to
    ``half_open_max_calls`` trial calls through at once; ``success_threshold``
    successful trials close it, one failed trial opens it again.

    Args:
        failure_threshold: Consecutive counted failures that open the breaker (>= 1).
        recovery_timeout: Seconds an open breaker waits before half-opening (>= 0).
        expected_exception: What counts as a failure: an exception class, a tuple of
            them, or a predicate. Other exceptions pass through uncounted.
        exclude: Exceptions (same forms) that never count, even when expected.
        success_threshold: Successful trial calls that close a half-open breaker.
        half_open_max_calls: Trial calls allowed at once while half-open.
        name: Names the breaker in logs, metrics and shared storage (default: the
            decorated function's qualified name).
        storage: ``None`` for state in this process, or a ``redis://`` URL: breakers
            with the same ``name`` in every process share their state through it.
            When that Redis is unreachable the breaker keeps working on local state
            and logs one warning.
        clock: Seconds as a float, for the recovery timeout (default ``time.time``;
            a wall clock, so processes sharing state agree on when it opened).

    Example:
        >>> @CircuitBreaker(failure_threshold=5, recovery_timeout=60,
        ...                 expected_exception=ServiceUnavailable)
        ... async def call_external_service(): ...
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 60,
        expected_exception: ExceptionSpec = Exception,
        exclude: ExceptionSpec | None = None,
        success_threshold: int = 1,
        half_open_max_calls: int = 1,
        name: str | None = None,
        storage: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _number("failure_threshold", failure_threshold, minimum=1, integer=True)
        _number("recovery_timeout", recovery_timeout, minimum=0, integer=False)
        _number("success_threshold", success_threshold, minimum=1, integer=True)
        _number("half_open_max_calls", half_open_max_calls, minimum=1, integer=True)
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"name={name!r}: expected a non-empty string", field="name")
        if storage is not None and name is None:
            raise ConfigError(
                f"storage={storage!r} needs name=: breakers share state by name",
                field="name",
            )
        self.failure_threshold = failure_threshold
        self.recovery_timeout = float(recovery_timeout)
        self.success_threshold = success_threshold
        self.half_open_max_calls = half_open_max_calls
        self._expected = _matcher(expected_exception, "expected_exception")
        self._excluded = _matcher(exclude, "exclude") if exclude is not None else None
        self._clock = clock
        self._named = name is not None
        self._opened_at = 0.0
        self._trials = 0
        self._trial_lock = threading.Lock()
        self._applying_remote = False
        self._stack: contextvars.ContextVar[tuple[bool, ...]] = contextvars.ContextVar(
            "zephyr_breaker_trials", default=()
        )
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=failure_threshold,
            reset_timeout=self.recovery_timeout,
            success_threshold=success_threshold,
            exclude=[self._ignored],
            listeners=[_Events(self)],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._storage = self._breaker._state_storage
        self._n_success = self._n_failure = self._n_ignored = self._n_rejected = 0
        self._name(name or f"breaker-{next(_unnamed)}")
        self._shared = None
        if storage is not None:
            from zephyr_resilience._breaker_redis import SharedState

            self._shared = SharedState(storage, self)

    # -- naming and metrics -------------------------------------------------------

    def _name(self, name: str) -> None:
        self.name = name
        self._breaker.name = name
        BREAKERS.live.add(self)

    def outcome_counts(self) -> tuple[int, int, int, int]:
        """Calls so far by outcome: (success, failure, ignored, rejected)."""
        return self._n_success, self._n_failure, self._n_ignored, self._n_rejected

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return str(self._breaker.current_state)

    @property
    def failure_count(self) -> int:
        """Consecutive counted failures so far (pybreaker's ``fail_counter``)."""
        return int(self._breaker.fail_counter)

    def open(self) -> None:
        """Open the breaker now (for operators and tests)."""
        self._breaker.open()

    def close(self) -> None:
        """Close the breaker now, forgetting its failures."""
        self._breaker.close()

    def _ignored(self, exc: BaseException) -> bool:
        # pybreaker's exclusion predicate: True for what must not count.
        if not self._expected(exc):
            return True
        return self._excluded is not None and self._excluded(exc)

    # -- the state machine around one call ---------------------------------------

    def _before(self) -> bool:
        """Admit a call or raise; True when it is a half-open trial."""
        state = self._storage.state
        if state == pybreaker.STATE_CLOSED:
            return False
        if state == pybreaker.STATE_OPEN:
            wait = self._opened_at + self.recovery_timeout - self._clock()
            if wait > 0:
                self._n_rejected += 1
                raise CircuitBreakerError(self.name, "open", wait)
            with self._breaker._lock:
                if self._breaker.current_state == pybreaker.STATE_OPEN:
                    self._breaker.half_open()
        with self._trial_lock:
            if self._trials >= self.half_open_max_calls:
                self._n_rejected += 1
                raise CircuitBreakerError(self.name, "half-open", 0.0)
            self._trials += 1
        return True

    def _release(self) -> None:
        with self._trial_lock:
            self._trials = max(0, self._trials - 1)

    def _success(self, trial: bool) -> None:
        self._n_success += 1
        if not trial and self._storage.counter == 0:
            # Closed with no failure to forget: pybreaker's success handling would
            # reset a zero counter and notify listeners that do nothing on success.
            return
        if trial:
            self._release()
        with self._breaker._lock:
            self._breaker.state._handle_success()

    def _failure(self, exc: BaseException, trial: bool) -> None:
        if trial:
            self._release()
        with self._breaker._lock:
            try:
                self._breaker.state._handle_error(exc, reraise=False)
            except BaseException as raised:
                # Tripping re-raises the call's own exception (throw_new_error_on_trip
                # is off): the caller raises it next, so it is dropped here.
                if raised is not exc:
                    raise
        if self._ignored(exc):
            self._n_ignored += 1
        else:
            self._n_failure += 1

    def _changed(self, old: str | None, new: str) -> None:
        if new == pybreaker.STATE_OPEN and not self._applying_remote:
            self._opened_at = self._clock()
        BREAKER_TRANSITIONS.labels(self.name, new).inc()
        level = logging.WARNING if new == pybreaker.STATE_OPEN else logging.INFO
        origin = " (from shared state)" if self._applying_remote else ""
        logger.log(level, "circuit breaker %r: %s -> %s%s", self.name, old, new, origin)
        if self._shared is not None and not self._applying_remote:
            self._shared.publish(new, self._opened_at)

    def _apply_remote(self, state: str, opened_at: float) -> None:
        """Take a state another process published (no re-publishing)."""
        with self._breaker._lock:
            if state == pybreaker.STATE_OPEN:
                self._opened_at = opened_at
            if state == self._breaker.current_state:
                return
            self._applying_remote = True
            try:
                if state == pybreaker.STATE_OPEN:
                    self._breaker.open()
                elif state == pybreaker.STATE_HALF_OPEN:
                    self._breaker.half_open()
                else:
                    self._breaker.close()
            finally:
                self._applying_remote = False

    def _before_async(self) -> bool:
        if self._shared is not None:
            self._shared.ensure_started()
        return self._before()

    # -- decorator ----------------------------------------------------------------

    @overload
    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, func: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Guard ``func`` (an ``async def`` or a plain function) with this breaker."""
        if not callable(func):
            raise ConfigError(f"CircuitBreaker decorates a callable, not {func!r}")
        if not self._named:
            self._named = True
            self._name(getattr(func, "__qualname__", self.name))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                trial = self._before_async()
                try:
                    result = await func(*args, **kwargs)
                except Exception as exc:
                    self._failure(exc, trial)
                    raise
                except BaseException:  # cancelled: neither a success nor a failure
                    if trial:
                        self._release()
                    raise
                self._success(trial)
                return result

            return guarded_async

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            trial = self._before()
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                self._failure(exc, trial)
                raise
            except BaseException:
                if trial:
                    self._release()
                raise
            self._success(trial)
            return result

        return guarded

    # -- context managers -----------------------------------------------------------

    def _enter(self, trial: bool) -> None:
        self._stack.set((*self._stack.get(), trial))

    def _exit(self, exc: BaseException | None) -> None:
        stack = self._stack.get()
        trial = stack[-1] if stack else False
        self._stack.set(stack[:-1])
        if exc is None:
            self._success(trial)
        elif isinstance(exc, Exception):
            self._failure(exc, trial)
        elif trial:
            self._release()

    async def __aenter__(self) -> CircuitBreaker:
        self._enter(self._before_async())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    def __enter__(self) -> CircuitBreaker:
        self._enter(self._before())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def aclose(self) -> None:
        """Stop following the shared state (closes the Redis connection, if any)."""
        if self._shared is not None:
            await self._shared.aclose()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state} failures={self.failure_count}>"
