"""The publisher thread: sends what async callers enqueue, on brokers other than plain Redis.

Messages built in the caller with Celery's ``create_task_message`` are handed to one
publisher thread per app and process, which sends whatever has queued up since its
last pass through ``send_task_message`` inside a kombu producer batch (plain
publishes with confirms on RabbitMQ; one pipeline on a Redis broker the event-loop
publisher cannot take, such as one with a global key prefix). The awaiting caller
resumes when its message is on the broker.

With JOB_ENQUEUE_REPLICAS (Redis only) a batch's commands are captured from Celery
and sent in one pipeline ending with ``WAIT`` (:mod:`zephyr_celery._redis.replicas`):
each message of the batch then fails with the shortfall when too few replicas confirm.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zephyr_celery._redis import replicas as _replicas
from zephyr_core._background import current_pid

# Messages sent in one batch at most (one pipeline on Redis).
_BATCH = 500


@dataclass(slots=True)
class Outgoing:
    """A built message waiting for the publisher thread."""

    name: str
    message: Any
    options: dict[str, Any]
    done: Callable[[BaseException | None], None]


class Publisher:
    """One thread that publishes every message an app's async callers enqueue."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._queue: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="zephyr-jobs-publisher", daemon=True)
        self._thread.start()

    def submit(self, item: Outgoing) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            error = self._send(batch)
            for item in batch:
                item.done(error)

    def _send(self, batch: list[Outgoing]) -> BaseException | None:
        try:
            if _replicas.for_app(self.app).count:
                with self.app.producer_or_acquire() as producer:
                    messages = [(item.name, item.message, item.options) for item in batch]
                    _replicas.publish(self.app, producer, messages)
                return None
        except Exception as exc:  # retried inside under Celery's publish policy
            return exc
        send = self.app.amqp.send_task_message
        try:
            with self.app.producer_or_acquire() as producer:
                if len(batch) == 1:
                    send(producer, batch[0].name, batch[0].message, **batch[0].options)
                else:
                    with producer.batch(max_size=2 * _BATCH + 2):
                        for item in batch:
                            send(producer, item.name, item.message, **item.options)
            return None
        except Exception:
            pass
        # The batch failed as a whole (the broker went away mid-way, say): send each
        # message on its own, with Celery's publish retry policy reconnecting. A
        # message the failed pipeline did deliver is then sent twice: at-least-once.
        try:
            with self.app.producer_or_acquire() as producer:
                for item in batch:
                    send(producer, item.name, item.message, **item.options)
            return None
        except Exception as exc:
            return exc


_lock = threading.Lock()
_publishers: dict[int, tuple[int, Publisher]] = {}


def publisher_for(app: Any) -> Publisher:
    """The publisher thread of ``app`` in this process (started on first use)."""
    key = id(app)
    found = _publishers.get(key)
    if found is None or found[0] != current_pid() or found[1].app is not app:
        with _lock:
            found = _publishers.get(key)
            if found is None or found[0] != current_pid() or found[1].app is not app:
                found = _publishers[key] = (current_pid(), Publisher(app))
    return found[1]
