"""Shared bits for benchmark scripts: run from the repository root or anywhere."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def row(label: str, ours: float, raw: float, unit: str, lower_is_better: bool = True) -> str:
    """One line: our figure, the raw library's, and the ratio ours/raw."""
    ratio = ours / raw if raw else float("inf")
    better = "lower" if lower_is_better else "higher"
    return (
        f"{label:<38} ours {ours:10.2f} {unit:<6} raw {raw:10.2f} {unit:<6} "
        f"ratio {ratio:5.2f}x ({better} is better)"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)
