"""Another process using a tiered cache, driven line by line over stdin/stdout.

Run as ``python -m tests.cache.peer REDIS_URL``; it prints ``ready`` once its
invalidation channel is subscribed, then answers one JSON line per command:
``get KEY``, ``local KEY`` (is KEY in this process's local tier?), ``set KEY JSON``,
``delete KEY``, ``invalidate GROUP VALUE``, ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from zephyr_cache import CacheGroup, close_caches, configure, get_cache
from zephyr_cache._memory import MISSING


async def main(url: str) -> None:
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    hot = get_cache("hot")
    local = hot._store.tiers[0].backend  # type: ignore[attr-defined]
    assert await hot.wait_ready(10)
    print("ready", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command, _, rest = line.strip().partition(" ")
        answer: object = None
        if command == "get":
            answer = await hot.get(rest)
        elif command == "local":
            answer = local.lookup(hot.full_key(rest)) is not MISSING
        elif command == "set":
            key, _, value = rest.partition(" ")
            answer = await hot.set(key, json.loads(value))
        elif command == "delete":
            answer = await hot.delete(rest)
        elif command == "invalidate":
            group, _, value = rest.partition(" ")
            await CacheGroup(group, cache_name="hot").invalidate(json.loads(value))
        else:
            break
        print(json.dumps(answer), flush=True)
    await close_caches()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
