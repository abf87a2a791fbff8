"""What a worker held on a Redis broker when its connection dropped, until it is back.

kombu's channel puts the messages it holds back in their queues when it closes. When
it closes because Redis went away, that restore fails and the messages stay in the
``unacked`` hash until the visibility timeout (an hour by default) makes some worker
restore them: a broker restart of two seconds strands the worker's prefetched jobs
for an hour. The closing channel writes them down here instead, in memory, per
process and per Redis server; the next channel the process opens to that server
(the worker's consumer reconnecting) takes them over at its first poll:

- a message Celery will still run is *adopted*: one it runs (the worker does not
  terminate running jobs on a connection loss), or had handed to its pool when the
  connection dropped (the threads pool queues every prefetched job in its executor,
  and runs them all); the new channel refreshes its unacked timestamp like its own,
  so the visibility timeout keeps protecting it, and its acknowledgement, which
  arrives on the closed channel, is forwarded to Redis;
- every other one (prefetched and dropped by Celery, as the prefork pool drops the
  jobs still waiting for a free process, or finished with a requeue) goes back to
  the head of its queue at once;
- so do the messages of a pop whose reply the connection lost: the pop recorded them
  as unacked with its own timestamp as their score, which finds them.

What Celery runs is read from its worker state (only once Celery's worker module is
loaded): ``active_requests`` and ``reserved_requests``, each request's ``message``.

Private internals used:

- ``celery.worker.request.Request._apply_result``
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from zephyr_core._background import current_pid

#: (process, host, port, database, user, key prefix): one record per broker.
ServerKey = tuple[int, str, int, str, str, str]


@dataclass
class Work:
    """What the next channel has to do, taken out of a :class:`Stranded` in one go."""

    held: set[str] = field(default_factory=set)
    #: Of ``held``: those Celery runs or had handed to its pool when they were held.
    handed: set[str] = field(default_factory=set)
    removals: list[str] = field(default_factory=list)
    requeues: list[str] = field(default_factory=list)
    pop_scores: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.held or self.removals or self.requeues or self.pop_scores)


class Stranded:
    """The held messages of one process on one Redis, between two channels.

    Thread-safe: acknowledgements arrive from the threads pool's threads, while the
    event loop's thread takes the work over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = Work()
        self._adopted: set[str] = set()
        #: Whether there is anything to take over (read without the lock: a hint).
        self.pending = False

    def strand(self, tags: set[str]) -> None:
        """Messages a closing channel held and could not put back."""
        if tags:
            handed = tags & celery_tags()
            with self._lock:
                self._work.held |= tags
                self._work.handed |= handed
                self.pending = True

    def lost_pop(self, score: str) -> None:
        """A pop with this unacked score whose reply never got delivered."""
        with self._lock:
            self._work.pop_scores.append(score)
            self.pending = True

    def finished(self, tag: str, requeue: bool = False) -> bool:
        """An ack (or reject) that arrived on a closed channel; False if not ours.

        A message already put back in its queue is not ours any more: removing its
        unacked record now would remove the record of its next delivery.
        """
        with self._lock:
            if tag in self._adopted:
                self._adopted.discard(tag)
            elif tag in self._work.held:
                self._work.held.discard(tag)
                self._work.handed.discard(tag)
            else:
                return False
            (self._work.requeues if requeue else self._work.removals).append(tag)
            self.pending = True
            return True

    def unsent(self, tags: list[str]) -> None:
        """Acknowledgements a closing channel had deferred and could not send."""
        if tags:
            with self._lock:
                self._work.removals += tags
                self.pending = True

    def take(self) -> Work:
        """Everything to do now; the caller hands back what it could not do."""
        with self._lock:
            work, self._work = self._work, Work()
            self.pending = False
            return work

    def take_removals(self) -> list[str]:
        """Only the forwarded acknowledgements (cheap: they ride along with a pop)."""
        with self._lock:
            removals, self._work.removals = self._work.removals, []
            self.pending = bool(self._work)
            return removals

    def give_back(self, work: Work) -> None:
        """Work a channel could not finish (Redis went away again): for the next one."""
        with self._lock:
            self._work.held |= work.held
            self._work.handed |= work.handed
            self._work.removals += work.removals
            self._work.requeues += work.requeues
            self._work.pop_scores += work.pop_scores
            self.pending = bool(self._work)

    def adopt(self, tags: set[str]) -> None:
        """Messages still running: refreshed by the new channel, acks forwarded."""
        with self._lock:
            self._adopted |= tags

    def adopted(self) -> list[str]:
        """The adopted messages: kept until Celery acknowledges or rejects them."""
        with self._lock:
            return list(self._adopted)


_lock = threading.Lock()
_records: dict[ServerKey, Stranded] = {}


def stranded_for(server: tuple[str, int, str, str, str]) -> Stranded:
    """This process's record for ``server`` (host, port, database, user, key prefix)."""
    key: ServerKey = (current_pid(), *server)
    with _lock:
        record = _records.get(key)
        if record is None:
            record = _records[key] = Stranded()
        return record


def celery_tags() -> set[str]:
    """Delivery tags of the messages this process's Celery worker will still run.

    The jobs it runs, and those it has handed to its pool (which runs them even
    after the connection they came on is gone). Empty outside a worker (Celery's
    worker state is not even imported there).
    """
    state = sys.modules.get("celery.worker.state")
    if state is None:
        return set()
    active = tuple(state.active_requests)
    handed = [r for r in tuple(state.reserved_requests) if r._apply_result is not None]
    tags: set[str] = set()
    for request in (*active, *handed):
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if isinstance(tag, str):
            tags.add(tag)
    return tags
