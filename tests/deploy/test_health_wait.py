"""``wait_healthy``'s decisions, with an injected clock: healthy, unhealthy, exited, no
health check, and the deadline (a scripted container object, no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from zephyr_deploy._engine import wait_healthy
from zephyr_deploy._exceptions import DeployError


class ScriptedContainer:
    """Plays back ``states`` on each reload(), the last one repeating."""

    short_id = "c0ffee"

    def __init__(self, *states: dict[str, Any]) -> None:
        self.states, self.reloads = list(states), 0
        self.attrs: dict[str, Any] = {}

    def reload(self) -> None:
        self.attrs = {"State": self.states[min(self.reloads, len(self.states) - 1)]}
        self.reloads += 1

    def logs(self, tail: int) -> bytes:
        return b"starting\nImportError: no module named shop\n"


def health(status: str) -> dict[str, Any]:
    return {"Status": "running", "Health": {"Status": status, "Log": [{"Output": "refused"}]}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_returns_once_healthy() -> None:
    clock = Clock()
    container = ScriptedContainer(health("starting"), health("starting"), health("healthy"))
    wait_healthy(container, timeout=10, clock=clock, sleep=clock.sleep)
    assert container.reloads == 3 and clock.now == 1.0


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (health("unhealthy"), "is unhealthy: refused"),
        ({"Status": "exited", "ExitCode": 3}, "exited with 3: ImportError: no module named shop"),
        ({"Status": "running"}, "has no health check"),
    ],
)
def test_fails_in_one_line(state: dict[str, Any], message: str) -> None:
    clock = Clock()
    with pytest.raises(DeployError, match=message):
        wait_healthy(ScriptedContainer(health("starting"), state), timeout=10, clock=clock,
                     sleep=clock.sleep)  # fmt: skip


def test_gives_up_at_the_deadline() -> None:
    clock = Clock()
    with pytest.raises(DeployError, match=r"not healthy after 5 s \(health: starting\)"):
        wait_healthy(ScriptedContainer(health("starting")), timeout=5, clock=clock,
                     sleep=clock.sleep)  # fmt: skip
    assert clock.now == 5.0
