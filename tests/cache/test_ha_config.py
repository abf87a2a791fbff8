"""Sentinel and Cluster URLs in cache configuration: accepted, checked early, masked."""

from __future__ import annotations

import pytest

from zephyr_cache import configure, get_cache
from zephyr_cache._config import parse
from zephyr_core import ConfigError, Settings

SENTINEL = "sentinel://:s3cret@127.0.0.1:26379;sentinel://:s3cret@127.0.0.1:26380/2"
CLUSTER = "redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize(
    "url",
    [
        SENTINEL + "?master_name=mymaster",
        "sentinels://127.0.0.1:26379/0?master_name=mymaster",
        CLUSTER,
        "rediss+cluster://127.0.0.1:7000",
    ],
)
def test_sentinel_and_cluster_urls_are_accepted_and_masked(url: str) -> None:
    configure({"default": {"backend": "redis", "url": url}})
    shown = repr(get_cache())
    assert "s3cret" not in shown
    assert get_cache().config.url == url


def test_a_sentinel_url_needs_a_master_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as raised:
        configure({"default": {"backend": "redis", "url": SENTINEL}})
    message = str(raised.value)
    assert "caches['default'].url" in message and "master" in message
    assert "s3cret" not in message
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    configs = parse({"default": {"backend": "redis", "url": SENTINEL}}, Settings())
    assert configs["default"].url == SENTINEL


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://:s3cret@127.0.0.1:7000/1", "0"),
        ("redis+cluster://", "host"),
        ("sentinel://:s3cret@127.0.0.1:notaport?master_name=m", "port"),
    ],
)
def test_bad_ha_urls_fail_naming_the_field(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        configure({"default": {"backend": "redis", "url": url}})
    message = str(raised.value)
    assert "caches['default'].url" in message
    assert reason in message
    assert "s3cret" not in message


def test_cache_url_setting_takes_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_URL", CLUSTER)
    assert get_cache().config.url == CLUSTER
