"""How a balancer picks an endpoint: one ``pick`` per strategy, plain functions of state.

Each strategy gets the endpoints that may take the request (healthy, not ejected, not
already tried by this request) and returns one. No I/O, no clock reads of their own:
the balancer passes ``now``, and p2c takes an injected random source.

=====================  ===============================================================
``round_robin``        each in turn; even load when endpoints are alike
``least_connections``  fewest requests in flight; adapts to slow endpoints, but every
                       caller sees the same minimum and herds onto it
``weighted``           smooth weighted round robin (nginx): a weight-3 endpoint gets 3
                       of every 4 requests beside a weight-1 one, spread evenly
``p2c``                power of two choices (Finagle, Linkerd): two random endpoints,
                       the one with fewer in-flight requests times its latency EWMA;
                       avoids slow endpoints without herding
=====================  ===============================================================
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from zephyr_core import ConfigError
from zephyr_resilience._endpoints import Endpoint

STRATEGIES = ("round_robin", "least_connections", "weighted", "p2c")


class Strategy(Protocol):
    def pick(self, candidates: Sequence[Endpoint], now: float) -> Endpoint:
        """Choose one of ``candidates`` (never empty)."""
        ...


class RoundRobin:
    def __init__(self) -> None:
        self.turn = 0

    def pick(self, candidates: Sequence[Endpoint], now: float) -> Endpoint:
        self.turn += 1
        return candidates[self.turn % len(candidates)]


class LeastConnections:
    def __init__(self) -> None:
        self.turn = 0

    def pick(self, candidates: Sequence[Endpoint], now: float) -> Endpoint:
        # Ties go round robin, so an idle service does not send everything to the first.
        self.turn += 1
        count = len(candidates)
        best = candidates[self.turn % count]
        for offset in range(1, count):
            endpoint = candidates[(self.turn + offset) % count]
            if endpoint.in_flight < best.in_flight:
                best = endpoint
        return best


class Weighted:
    def pick(self, candidates: Sequence[Endpoint], now: float) -> Endpoint:
        total = 0
        best = candidates[0]
        for endpoint in candidates:
            endpoint.current_weight += endpoint.weight
            total += endpoint.weight
            if endpoint.current_weight > best.current_weight:
                best = endpoint
        best.current_weight -= total
        return best


class PowerOfTwoChoices:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def pick(self, candidates: Sequence[Endpoint], now: float) -> Endpoint:
        count = len(candidates)
        if count == 1:
            return candidates[0]
        first = int(self.rng.random() * count)
        second = int(self.rng.random() * (count - 1))
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        cost_a = (a.in_flight + 1) * a.latency(now)
        cost_b = (b.in_flight + 1) * b.latency(now)
        return a if cost_a <= cost_b else b


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    """The strategy called ``name``; a ConfigError lists the accepted names."""
    if name == "round_robin":
        return RoundRobin()
    if name == "least_connections":
        return LeastConnections()
    if name == "weighted":
        return Weighted()
    if name == "p2c":
        return PowerOfTwoChoices(rng)
    raise ConfigError(
        f"strategy={name!r}: expected one of {', '.join(STRATEGIES)}", field="strategy"
    )
