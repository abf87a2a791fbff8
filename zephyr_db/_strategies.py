"""Choosing a replica for a read: round robin or least connections (pure logic)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

STRATEGIES = ("round_robin", "least_connections")


class _Counted(Protocol):
    @property
    def in_use(self) -> int: ...


T = TypeVar("T", bound=_Counted)


def pick(strategy: str, candidates: Sequence[T], turn: int) -> T:
    """The candidate for this read; ``turn`` counts reads so far (ties rotate with it).

    >>> class P:
    ...     def __init__(self, n): self.in_use = n
    >>> a, b, c = P(2), P(0), P(0)
    >>> [pick("round_robin", [a, b, c], t) is x for t, x in [(0, a), (1, b), (4, b)]]
    [True, True, True]
    >>> [pick("least_connections", [a, b, c], t) is x for t, x in [(0, b), (1, c)]]
    [True, True]
    """
    count = len(candidates)
    if strategy == "round_robin" or count == 1:
        return candidates[turn % count]
    fewest = min(candidate.in_use for candidate in candidates)
    tied = [candidate for candidate in candidates if candidate.in_use == fewest]
    return tied[turn % len(tied)]
