"""A heartbeat file the worker touches, for a cheap liveness check (the chart's exec probe).

With ``ZEPHYR_HEARTBEAT_FILE`` set, a consumer bootstep touches that file every
:data:`INTERVAL` seconds from the consumer's own timer, which runs on the loop that
takes messages: a worker whose consumer is stuck stops touching it, and the probe
(``time.time() - mtime > 60``) fails without a broker round trip. ``celery inspect
ping`` every few seconds would cost a broadcast through the broker per pod per probe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import bootsteps

#: The variable naming the file; unset: no heartbeat.
VARIABLE = "ZEPHYR_HEARTBEAT_FILE"
#: Seconds between two touches (the chart's probes allow 30 and 60).
INTERVAL = 10.0


def touch(path: Path) -> None:
    """Create ``path`` or move its modification time to now."""
    path.touch()
    os.utime(path)


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: touch ``ZEPHYR_HEARTBEAT_FILE`` every :data:`INTERVAL` seconds."""

    name = "zephyr heartbeat file"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        raw = os.environ.get(VARIABLE)
        self.path = Path(raw) if raw else None
        self.timer_ref: Any = None
        super().__init__(parent, **kwargs)

    def include_if(self, parent: Any) -> bool:
        return self.path is not None

    def start(self, parent: Any) -> None:
        assert self.path is not None
        touch(self.path)  # at once: the consumer is up and consuming
        self.timer_ref = parent.timer.call_repeatedly(INTERVAL, touch, (self.path,))

    def stop(self, parent: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None
