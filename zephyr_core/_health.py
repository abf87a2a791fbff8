"""Readiness checks: a registry each package adds to, and the built-in Redis probe.

A check is an async callable that returns on success and raises on failure; one that
returns a non-empty string passes degraded (the string, shown as ``"degraded"``, says
which part is down); one that returns a dict passes and adds its items to the check's
report (the Redis probe says which master it reached). Packages
register theirs with :func:`register_check` (at import) or through the
``zephyr.health`` entry-point group (a callable taking Settings and returning checks),
so ``zephyr_core`` never imports them.

The Redis probes (:mod:`zephyr_core._redis_probe`) are imported when checks are built or
a probe is made, not with this module: ``import zephyr_core`` loads this module and must
not load redis-py (its asyncio part needs packages a bare Python may lack) or pay for it
at every CLI start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from zephyr_core._settings import Settings
from zephyr_core._urls import mask_url

__all__ = [
    "ReadinessCheck",
    "checks_for",
    "database_probe",
    "redis_probe",
    "register_check",
    "run_checks",
]

Probe = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class ReadinessCheck:
    """One dependency ``/health/ready`` probes.

    Attributes:
        name: What failed, as reported in the 503 body (``"redis"``, ``"database"``).
        probe: Async callable that returns when the dependency answers, raises otherwise.
        timeout: Seconds before the probe counts as failed.
    """

    name: str
    probe: Probe
    timeout: float = 2.0


_registered: dict[str, ReadinessCheck] = {}


def register_check(name: str, probe: Probe, *, timeout: float = 2.0) -> None:
    """Add (or replace) a readiness check run by every ``/health/ready`` request."""
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r}: must be a positive number of seconds")
    _registered[name] = ReadinessCheck(name, probe, timeout)


def database_probe(url: str) -> Probe:
    """A probe that runs ``SELECT 1`` on PostgreSQL (needs the ``db`` extra)."""

    async def select_one() -> None:
        try:
            import asyncpg
        except ImportError as exc:
            raise RuntimeError("asyncpg is missing: pip install -e '.[db]' in a checkout") from exc
        conn = await asyncpg.connect(url, timeout=1.5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    return select_one


def redis_probe(url: str, settings: Settings | None = None) -> Probe:
    """A probe for the Redis behind ``url``: see :func:`zephyr_core._redis_probe.redis_probe`."""
    from zephyr_core._redis_probe import redis_probe as make_probe

    return make_probe(url, settings)


def checks_for(settings: Settings) -> list[ReadinessCheck]:
    """Every readiness check that applies under ``settings``."""
    from zephyr_core._redis_probe import redis_checks

    checks: list[ReadinessCheck] = [
        ReadinessCheck(name, probe, timeout) for name, probe, timeout in redis_checks(settings)
    ]
    provided: list[ReadinessCheck] = []
    for entry in entry_points(group="zephyr.health"):
        try:
            provider: Callable[[Settings], Iterable[ReadinessCheck]] = entry.load()
        except ImportError:  # that package's extra is not installed
            continue
        provided.extend(provider(settings))
    # zephyr_db's provider checks the primary and replicas: it replaces the plain probe.
    if settings.DATABASE_URL and not any(check.name == "database" for check in provided):
        checks.append(ReadinessCheck("database", database_probe(settings.DATABASE_URL)))
    checks.extend(provided)
    checks.extend(_registered.values())
    return checks


async def run_checks(checks: Iterable[ReadinessCheck]) -> dict[str, dict[str, Any]]:
    """Run checks concurrently; report each as ``{"ok", "ms"[, "error"]}``."""

    async def one(check: ReadinessCheck) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(check.probe(), check.timeout)
        except Exception as exc:
            reason = (
                f"timed out after {check.timeout:g}s"
                if isinstance(exc, TimeoutError)
                else mask_url(f"{type(exc).__name__}: {exc}")
            )
            failed: dict[str, Any] = dict(getattr(exc, "details", None) or {})
            failed.update({"ok": False, "ms": _ms(started), "error": reason})
            return check.name, failed
        result: dict[str, Any] = {"ok": True, "ms": _ms(started)}
        if isinstance(outcome, str) and outcome:  # passing, with a part down
            result["degraded"] = mask_url(outcome)
        elif isinstance(outcome, dict):  # passing, with details (never ok/ms/error)
            details = {k: v for k, v in outcome.items() if k not in ("ok", "ms", "error")}
            result.update(details)
        return check.name, result

    return dict(await asyncio.gather(*(one(check) for check in checks)))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
