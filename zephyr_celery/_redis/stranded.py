"""What a worker held on a Redis broker when its connection dropped, until it is back.

kombu's channel puts the messages it holds back in their queues when it closes. When
it closes because Redis went away, that restore fails and the messages stay in the
``unacked`` hash until the visibility timeout (an hour by default) makes some worker
restore them: a broker restart of two seconds strands the worker's prefetched jobs
for an hour. The closing channel writes them down here instead, in memory, per
process and per Redis server; the next channel the process opens to that server
(the worker's consumer reconnecting) takes them over at its first poll:

- a message Celery will still run is *adopted*: the new channel refreshes its unacked
  timestamp like its own, so the visibility timeout keeps protecting it, and its
  acknowledgement, which arrives on the closed channel, is forwarded to Redis;
- every other one goes back to the head of its queue at once (and one finished with
  a requeue);
- so do the messages of a pop whose reply the connection lost: the pop recorded them
  as unacked with its own timestamp as their score, which finds them.

One more thing is handed over when the consuming channel closes: the acknowledgements it
sent in its last :data:`ACK_REPLAY_WINDOW` seconds, which the next channel sends again.
Redis replicates asynchronously, so acknowledgements a master took just before it died
may be missing on the replica promoted in its place (a Sentinel fail-over), and those
jobs would be handed out again after the visibility timeout. Removing an unacked
record twice does nothing: an acknowledged message is never delivered again.

Which messages Celery will still run: those it still holds, once it has dealt with
the connection loss. It keeps the jobs it runs (the worker does not terminate them
on Redis), what a pool already holds (the threads pool queues every prefetched job
in its executor, and runs them all) and the acknowledgements it has scheduled on its
event loop; it drops the rest (the prefork pool discards the jobs no process has
accepted yet), and a message nobody holds is freed. So the record keeps only a weak
reference to each kombu message: alive, Celery may still run or acknowledge it;
freed, it can do neither, and the message goes back to its queue (at once when the
next channel takes over; for an adopted one, at the next heartbeat).

Private internals used: none.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from zephyr_core._background import current_pid

#: (process, host, port, database, user, key prefix): one record per broker.
ServerKey = tuple[int, str, int, str, str, str]

#: Seconds of acknowledgements before the consuming channel closed that the next one
#: sends again: a master's replica lags it by milliseconds, seconds under heavy load.
ACK_REPLAY_WINDOW = 5.0
#: Acknowledgements remembered at most (several seconds of a busy worker's).
MAX_RECENT_ACKS = 20_000


@dataclass
class Work:
    """What the next channel has to do, taken out of a :class:`Stranded` in one go."""

    held: set[str] = field(default_factory=set)
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
        # The kombu message of a held or adopted tag, while anything holds it.
        self._messages: dict[str, weakref.ref[Any]] = {}
        #: Whether there is anything to take over (read without the lock: a hint).
        self.pending = False
        # (monotonic time, delivery tag) of the acknowledgements sent lately.
        self._acks: deque[tuple[float, str]] = deque(maxlen=MAX_RECENT_ACKS)

    def acked(self, tag: str) -> None:
        """An acknowledgement sent to Redis (remembered: see :meth:`consumer_closed`)."""
        self._acks.append((monotonic(), tag))  # deque.append is thread-safe

    def consumer_closed(self) -> None:
        """The consuming channel closed: its last acknowledgements go again with the next."""
        since = monotonic() - ACK_REPLAY_WINDOW
        recent = [tag for at, tag in self._acks.copy() if at >= since]
        self._acks.clear()
        if recent:
            with self._lock:
                self._work.removals += recent
                self.pending = True

    def strand(self, held: dict[str, Any]) -> None:
        """Messages (by delivery tag) a closing channel held and could not put back."""
        if held:
            with self._lock:
                self._work.held |= set(held)
                self._messages.update((tag, weakref.ref(held[tag])) for tag in held)
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
            else:
                return False
            self._messages.pop(tag, None)
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

    def give_back(self, work: Work) -> None:
        """Work a channel could not finish (Redis went away again): for the next one."""
        with self._lock:
            self._work.held |= work.held
            self._work.removals += work.removals
            self._work.requeues += work.requeues
            self._work.pop_scores += work.pop_scores
            self.pending = bool(self._work)

    def still_held(self, tags: set[str]) -> set[str]:
        """Of ``tags``, those whose message something still holds: Celery's, still."""
        with self._lock:
            refs = {tag: self._messages.get(tag) for tag in tags}
        if any(ref is not None and ref() is not None for ref in refs.values()):
            gc.collect()  # a dropped message kept only by a reference cycle is not held
        alive = {tag for tag, ref in refs.items() if ref is not None and ref() is not None}
        with self._lock:
            for tag in tags - alive:
                self._messages.pop(tag, None)
        return alive

    def adopt(self, tags: set[str]) -> None:
        """Messages Celery will still run: refreshed by the new channel, acks forwarded."""
        with self._lock:
            self._adopted |= tags

    def adopted(self) -> list[str]:
        """The adopted messages, once those Celery dropped are handed back for a restore.

        Celery acknowledges or rejects every message it runs, holding it until then;
        one it dropped can do neither, and refreshing it would keep it from running.
        """
        with self._lock:
            for tag in list(self._adopted):
                ref = self._messages.get(tag)
                if ref is None or ref() is None:
                    self._adopted.discard(tag)
                    self._messages.pop(tag, None)
                    self._work.held.add(tag)
                    self.pending = True
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
