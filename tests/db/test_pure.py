"""Lag, replica choice and read-your-writes decisions: plain functions, tested by tables."""

from __future__ import annotations

import pytest

from zephyr_db._consistency import Consistency, Session
from zephyr_db._lag import replica_lag
from zephyr_db._strategies import pick


@pytest.mark.parametrize(
    ("in_recovery", "caught_up", "streaming", "since_replay", "lag"),
    [
        (False, True, False, None, 0.0),     # a primary
        (False, True, False, 300.0, 0.0),    # a promoted replica keeps its old replay time
        (True, True, True, 300.0, 0.0),      # idle primary: nothing to replay, still streaming
        (True, False, True, 2.5, 2.5),       # received WAL not replayed yet (replay paused)
        (True, True, False, 40.0, 40.0),     # no longer hears from the primary
        (True, False, True, None, None),     # never replayed a commit: unknown
        (True, False, True, -0.01, 0.0),     # clocks a hair apart
    ],
)  # fmt: skip
def test_replica_lag(
    in_recovery: bool,
    caught_up: bool,
    streaming: bool,
    since_replay: float | None,
    lag: float | None,
) -> None:
    assert replica_lag(in_recovery, caught_up, streaming, since_replay) == lag


class P:
    def __init__(self, name: str, in_use: int) -> None:
        self.name, self.in_use = name, in_use


@pytest.mark.parametrize(
    ("strategy", "in_use", "turns", "expected"),
    [
        ("round_robin", [5, 0, 0], range(6), "abcabc"),
        ("least_connections", [2, 0, 0], range(4), "bcbc"),  # ties rotate
        ("least_connections", [0, 3, 1], range(3), "aaa"),
        ("least_connections", [1], range(2), "aa"),
    ],
)
def test_pick(strategy: str, in_use: list[int], turns: range, expected: str) -> None:
    candidates = [P(name, n) for name, n in zip("abc", in_use, strict=False)]
    assert "".join(pick(strategy, candidates, t).name for t in turns) == expected


async def test_consistency_window_and_sessions() -> None:
    now = [0.0]
    consistency = Consistency(1.0, lambda: now[0], "t")
    assert not consistency.needs_primary()
    consistency.wrote()
    assert consistency.needs_primary()
    now[0] = 1.0
    assert not consistency.needs_primary()
    async with Session(consistency, sticky=True):
        assert consistency.needs_primary()
    async with Session(consistency, sticky=False) as session:
        assert not consistency.needs_primary()
        consistency.wrote()
        assert session.wrote and consistency.needs_primary()
    now[0] = 5.0
    assert not consistency.needs_primary()
