"""Kubernetes resource quantities as numbers, to compare a request with its limit."""

from __future__ import annotations

import re

# Binary (Ki..Ei) and decimal (k, M, G..E) suffixes, as Kubernetes reads them.
_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    **{suffix: 1024**power for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
    **{suffix: 1000**power for power, suffix in enumerate(("k", "M", "G", "T", "P", "E"), 1)},
}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([A-Za-z]*)$")


def cpu_cores(quantity: str) -> float:
    """Cores in a CPU quantity: ``"250m"`` is 0.25, ``"2"`` is 2.0."""
    if quantity.endswith("m"):
        return int(quantity[:-1]) / 1000
    return float(quantity)


def memory_bytes(quantity: str) -> float:
    """Bytes in a memory quantity: ``"256Mi"`` is 268435456, ``"1G"`` is 10**9."""
    found = _MEMORY.match(quantity)
    number, unit = found.groups() if found else ("", "?")
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return float(number) * _MEMORY_UNITS[unit]
