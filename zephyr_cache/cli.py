"""``zephyr cache``: stats, clear and warm the caches an app configures.

``-A/--app MODULE`` imports the module that calls ``configure()`` and defines warmers
(like ``celery -A``); by default the module of ZEPHYR_APP, if set.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
from redis.asyncio import RedisCluster

from zephyr_cache._exceptions import CacheError
from zephyr_cache._redis import RedisStore
from zephyr_cache._registry import close_caches, configs, get_cache
from zephyr_cache._shared_stats import read
from zephyr_cache._tiered import TieredStore
from zephyr_cache._warmers import warm, warmers
from zephyr_core import ConfigError, get_settings, mask_url
from zephyr_core._imports import ModuleImportFailed, ModuleMissing, import_user_module

T = TypeVar("T")


def import_app(module: str) -> None:
    """Import ``module`` (``pkg.mod`` or ``pkg.mod:attr``) from the current directory."""
    name = module.partition(":")[0]
    if not name:
        raise click.UsageError(f"--app {module!r}: expected a module like 'myapp.caches'")
    try:
        import_user_module(name, option=f"--app {module!r}")
    except (ModuleMissing, ModuleImportFailed) as exc:
        raise click.UsageError(str(exc)) from None
    except ConfigError as exc:
        raise click.UsageError(f"--app {module!r}: {exc}") from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    async def run_and_close() -> T:
        try:
            return await coro
        finally:
            await close_caches()

    return asyncio.run(run_and_close())


def _known(name: str) -> None:
    if name not in configs():
        known = ", ".join(sorted(configs()))
        raise click.UsageError(f"no cache named {name!r} (configured: {known})")


async def _redis_view(name: str, store: RedisStore, key_prefix: str) -> dict[str, Any]:
    """What Redis says: reachable, keys under our prefix, every process's counters for
    this cache (flushed there every few seconds), the server's own hit ratio."""
    client = store.connector.backend().client
    view: dict[str, Any] = {
        "url": mask_url(store.connector.url),
        "topology": store.connector.topology.describe(),
    }
    try:
        keys = 0
        if isinstance(client, RedisCluster):  # every master's keys and counters
            per_node = await client.info("stats", target_nodes=RedisCluster.PRIMARIES)
            info = {
                field: sum(int(stats.get(field, 0)) for stats in per_node.values())
                for field in ("keyspace_hits", "keyspace_misses")
            }
            scan = client.scan_iter(
                match=f"{key_prefix}:*", count=1000, target_nodes=RedisCluster.PRIMARIES
            )
        else:
            info = await client.info("stats")
            scan = client.scan_iter(match=f"{key_prefix}:*", count=1000)
        async for _ in scan:
            keys += 1
        view["app"] = (await read(store.connector, key_prefix)).get(name, {})
    except Exception as exc:
        view["reachable"] = False
        view["error"] = f"{type(exc).__name__}: {exc}"
        return view
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    view.update(
        reachable=True,
        keys=keys,
        server_hits=hits,
        server_misses=misses,
        server_hit_ratio=round(hits / (hits + misses), 4) if hits + misses else None,
    )
    return view


async def _stats() -> list[dict[str, Any]]:
    rows = []
    for name, config in sorted(configs().items()):
        cache = get_cache(name)
        row: dict[str, Any] = {"cache": name, **config.describe()}
        store = cache._store
        redis = store if isinstance(store, RedisStore) else None
        if isinstance(store, TieredStore):
            redis = next((t for t in store.tiers if isinstance(t, RedisStore)), None)
        if redis is not None:
            row["redis"] = await _redis_view(name, redis, config.key_prefix)
        rows.append(row)
    return rows


@click.group(name="cache", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    metavar="MODULE",
    help="Module that configures the caches and defines warmers (default: ZEPHYR_APP's).",
)
def cache(app: str | None) -> None:
    """Inspect, clear and warm the configured caches."""
    module = app or (get_settings().ZEPHYR_APP or "").partition(":")[0] or None
    if module:
        import_app(module)


@cache.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def stats(as_json: bool) -> None:
    """Each cache's settings, keys, and hits/misses/errors of every process using it.

    Processes add their counters to Redis every few seconds (and on close_caches());
    memory-only caches are per process: see each process's /metrics.
    """
    rows = _run(_stats())
    unreachable = any(row.get("redis", {}).get("reachable") is False for row in rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        sys.exit(1 if unreachable else 0)
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "cache", "backend", "where", "status", "keys", "hits", "misses", "errors", "hit ratio"
    )
    for row in rows:
        redis = row.get("redis")
        where = row.get("url") or (
            f"max_size {row['max_size']}" if "max_size" in row else " > ".join(row.get("tiers", []))
        )
        status, keys, counts = "per process: see /metrics", "-", ["-"] * 4
        if redis is not None:
            status = "ok" if redis["reachable"] else f"down: {redis['error']}"
            keys = str(redis.get("keys", "-"))
            app = redis.get("app", {}).get("all")
            if app:
                ratio = app["hit_ratio"]
                counts = [str(app["hits"]), str(app["misses"]), str(app["errors"])]
                counts.append("-" if ratio is None else f"{ratio:.1%}")
        table.add_row(row["cache"], row["backend"], where, status, keys, *counts)
    # Piped output is read by people too: do not squeeze it into 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if unreachable:
        sys.exit(1)


@cache.command()
@click.argument("name")
def clear(name: str) -> None:
    """Remove every entry of the cache NAME (and its tiers, in every process)."""
    _known(name)
    backend = configs()[name].backend
    if backend in ("memory", "dummy"):
        raise click.UsageError(
            f"cache {name!r} is a {backend} cache: it lives inside each app process, "
            f"clear it there (await get_cache({name!r}).clear())"
        )

    async def run() -> None:
        target = get_cache(name)
        try:
            await target.ping()
        except Exception as exc:
            raise click.ClickException(f"cache {name!r} is unreachable: {exc}") from None
        await target.clear()

    _run(run())
    click.echo(f"cleared cache {name!r}")


@cache.command(name="warm")
@click.argument("name", required=False)
def warm_command(name: str | None) -> None:
    """Run the warmer NAME (every warmer when omitted)."""
    if name is not None and name not in warmers():
        known = ", ".join(warmers()) or "none registered: pass -A/--app MODULE"
        raise click.UsageError(f"no cache warmer named {name!r} (known: {known})")
    if name is None and not warmers():
        raise click.UsageError("no cache warmers registered: pass -A/--app MODULE")
    try:
        ran = _run(warm(name))
    except CacheError as exc:
        raise click.ClickException(str(exc)) from None  # one line, exit 1
    click.echo(f"warmed: {', '.join(ran)}")
