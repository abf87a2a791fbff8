"""A cache on Sentinel with TLS, a Redis password and a separate Sentinel password."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from tests.servers import SentinelTopology
from zephyr_cache import configure, get_cache

REDIS_PASSWORD = "r3dis-secret"
SENTINEL_PASSWORD = "s3ntinel-secret"


@pytest.mark.slow
async def test_sentinel_over_tls_with_both_passwords(
    own_sentinel_topology: Callable[..., SentinelTopology], caplog: pytest.LogCaptureFixture
) -> None:
    topology = own_sentinel_topology(
        password=REDIS_PASSWORD, sentinel_password=SENTINEL_PASSWORD, tls=True
    )
    url = topology.url(db=1)
    assert url.startswith("sentinels://") and "ssl_ca_certs=" in url
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 60},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    hot = get_cache("hot")
    with caplog.at_level(logging.DEBUG, logger="zephyr_cache"):
        assert await hot.wait_ready(10)  # the invalidation channel, through the Sentinels
        assert await hot.set("k", {"v": 1}) is True
        assert await get_cache().get("k") == {"v": 1}
        assert await get_cache().incr("n") == 1
    shown = repr(get_cache()) + repr(hot) + caplog.text
    assert REDIS_PASSWORD not in shown and SENTINEL_PASSWORD not in shown
