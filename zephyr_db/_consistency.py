"""Read-your-writes: when a read must go to the primary to see this task's writes.

Replicas apply the primary's changes a little later, so a task that writes and then
reads may not see its own write on a replica. Two ways to keep reads on the primary:

- ``cluster.session(sticky=True)``: every read inside the block goes to the primary;
  ``session()`` (not sticky) sends reads there once the block has written.
- ``read_your_writes=seconds``: reads in the same task (and tasks it starts) go to the
  primary for that long after its last write. The state lives in context variables,
  so concurrent requests do not see each other's writes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType


class Session:
    """The block ``cluster.session()`` returns; use it with ``async with``."""

    __slots__ = ("_consistency", "_token", "sticky", "wrote")

    def __init__(self, consistency: Consistency, sticky: bool) -> None:
        self._consistency = consistency
        self.sticky = sticky
        self.wrote = False
        self._token: object | None = None

    async def __aenter__(self) -> Session:
        self._consistency.active = True
        self._token = self._consistency.session.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            self._consistency.session.reset(self._token)  # type: ignore[arg-type]
            self._token = None


class Consistency:
    """Per-cluster context variables deciding whether a read needs the primary."""

    def __init__(self, window: float, clock: Callable[[], float], name: str) -> None:
        self.window = window
        self.clock = clock
        #: False until a window is set or a session is entered: reads skip the checks.
        self.active = bool(window)
        self.session: ContextVar[Session | None] = ContextVar(
            f"zephyr_db_session_{name}", default=None
        )
        self.last_write: ContextVar[float | None] = ContextVar(
            f"zephyr_db_last_write_{name}", default=None
        )

    def wrote(self) -> None:
        """Record a write by the current task (and the session around it)."""
        session = self.session.get()
        if session is not None:
            session.wrote = True
        if self.window:
            self.last_write.set(self.clock())

    def needs_primary(self) -> bool:
        """True when the next read in this context must see this context's writes."""
        session = self.session.get()
        if session is not None and (session.sticky or session.wrote):
            return True
        if self.window:
            last = self.last_write.get()
            if last is not None and self.clock() - last < self.window:
                return True
        return False
