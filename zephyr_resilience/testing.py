"""Test helpers: switch retry delays off, like stamina's ``set_testing``.

Example:
    >>> from zephyr_resilience import testing
    >>> testing.set_testing(True)            # no delays, one attempt per call
    >>> testing.set_testing(True, attempts=3)  # no delays, still three attempts
"""

from __future__ import annotations

import stamina

__all__ = ["is_testing", "set_testing"]


def set_testing(testing: bool, *, attempts: int = 1) -> None:
    """Turn testing mode on or off for every :func:`~zephyr_resilience.retry`.

    Args:
        testing: True removes every delay between attempts.
        attempts: Attempts each retried call makes in testing mode (stamina's
            default is 1: the first failure is raised at once).
    """
    stamina.set_testing(testing, attempts=attempts, cap=True)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return stamina.is_testing()
