"""Strategies and the retry budget as plain functions of state (no server)."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest

from zephyr_resilience import RetryBudget
from zephyr_resilience._endpoints import Endpoint
from zephyr_resilience._health import Ejection
from zephyr_resilience._strategies import make_strategy


def endpoints(*weights: int) -> list[Endpoint]:
    transport = httpx.AsyncBaseTransport()
    return [Endpoint(f"http://e{i}", w, transport) for i, w in enumerate(weights)]


def test_round_robin_takes_turns() -> None:
    eps = endpoints(1, 1, 1)
    strategy = make_strategy("round_robin")
    picks = [strategy.pick(eps, 0).url for _ in range(9)]
    assert Counter(picks) == {"http://e0": 3, "http://e1": 3, "http://e2": 3}
    assert len(set(picks[:3])) == 3


def test_least_connections_prefers_idle_and_spreads_ties() -> None:
    eps = endpoints(1, 1, 1)
    strategy = make_strategy("least_connections")
    eps[0].in_flight, eps[1].in_flight, eps[2].in_flight = 4, 1, 3
    assert strategy.pick(eps, 0) is eps[1]
    for e in eps:
        e.in_flight = 0
    assert {strategy.pick(eps, 0).url for _ in range(3)} == {e.url for e in eps}


@pytest.mark.parametrize(("weights", "rounds"), [((3, 1), 4), ((5, 1, 1), 7), ((2, 2, 1), 5)])
def test_smooth_weighted_round_robin(weights: tuple[int, ...], rounds: int) -> None:
    eps = endpoints(*weights)
    strategy = make_strategy("weighted")
    picks = [strategy.pick(eps, 0) for _ in range(rounds * 10)]
    counts = Counter(p.url for p in picks)
    assert [counts[e.url] for e in eps] == [w * 10 for w in weights]
    # smooth: the heaviest never gets more than its share in a row (nginx's property)
    first = [p.url for p in picks[:rounds]]
    assert Counter(first) == {e.url: e.weight for e in eps}
    if weights == (5, 1, 1):
        assert first == ["http://e0", "http://e0", "http://e1", "http://e0", "http://e2",
                         "http://e0", "http://e0"]  # fmt: skip


def test_p2c_avoids_a_slow_or_busy_endpoint() -> None:
    eps = endpoints(1, 1, 1)
    for e in eps:
        e.observe(0.001, 100.0)
    eps[2].observe(0.050, 100.0)
    strategy = make_strategy("p2c", random.Random(7))
    picks = Counter(strategy.pick(eps, 100.0).url for _ in range(3000))
    assert picks["http://e2"] == 0
    eps[0].in_flight = 100  # busy: the other fast one takes the load
    picks = Counter(strategy.pick(eps, 100.0).url for _ in range(3000))
    assert picks["http://e1"] > picks["http://e0"]


def test_p2c_probes_a_slow_endpoint_again_once_its_figures_are_old() -> None:
    eps = endpoints(1, 1)
    eps[0].observe(0.001, 0.0)
    eps[1].observe(0.050, 0.0)
    fast_again = 0.001
    # 150 s later the fast one was measured again just now, the slow one not at all.
    eps[0].observe(fast_again, 150.0)
    assert eps[1].latency(150.0) < eps[0].latency(150.0)


def test_budget_caps_retries_at_a_share_of_requests() -> None:
    now = [0.0]
    budget = RetryBudget(percent=0.2, min_per_second=0, window=10, clock=lambda: now[0])
    granted = 0
    for _ in range(1000):
        budget.deposit()
        granted += budget.try_withdraw()
        now[0] += 0.001
    assert granted == 200
    now[0] += 11  # the window slid past them
    assert not budget.try_withdraw()
    budget.deposit()
    assert not budget.try_withdraw()  # 1 request: 0.2 of a retry
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()


def test_budget_reserve_lets_a_quiet_service_retry() -> None:
    budget = RetryBudget(percent=0.2, min_per_second=1, window=10, clock=lambda: 0.0)
    assert sum(budget.try_withdraw() for _ in range(20)) == 10


def test_ejection_never_exceeds_the_max_share() -> None:
    eps = endpoints(1, 1, 1)
    policy = Ejection(eject_after=2, ejection_time=10, max_ejection_percent=50)
    for e in eps:
        for _ in range(2):
            policy.record("svc", e, eps, False, 0.0)
    assert [e.ejected_until > 0 for e in eps] == [True, False, False]
    assert eps[1].available(0.0) and not eps[0].available(0.0)
    assert eps[0].ejected_until == 10
    # re-ejected later: twice as long
    for _ in range(2):
        policy.record("svc", eps[0], eps, False, 11.0)
    assert eps[0].ejected_until == 11 + 20


def test_ejection_needs_consecutive_failures() -> None:
    eps = endpoints(1, 1)
    policy = Ejection(eject_after=3)
    for ok in (False, False, True, False, False):
        policy.record("svc", eps[0], eps, ok, 0.0)
    assert eps[0].ejected_until == 0
