"""`zephyr up` and `zephyr config show` with Sentinel and Cluster URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.servers import RedisClusterServers, SentinelTopology, free_port
from zephyr_core import Settings, ZephyrError
from zephyr_core._config_cli import config
from zephyr_core._valkey import plan_redis, redis_answers


def test_a_silent_sentinel_url_is_an_error_never_an_embedded_valkey(tmp_path: Path) -> None:
    url = ";".join(f"sentinel://:pw@127.0.0.1:{free_port()}" for _ in range(3))
    settings = Settings(JOB_QUEUE_URL=url + "/0?master_name=m", CACHE_BACKEND="memory")
    assert not redis_answers(settings.JOB_QUEUE_URL)
    with pytest.raises(ZephyrError) as caught:
        plan_redis(settings, tmp_path / "valkey")
    message = str(caught.value)
    assert "never replaces a Sentinel or Cluster URL" in message
    assert "JOB_QUEUE_URL" in message and "JOB_RESULT_URL" in message
    assert ":pw@" not in message and ":***@" in message
    assert not (tmp_path / "valkey").exists()  # nothing was started


def test_a_silent_cluster_url_is_an_error_too(tmp_path: Path) -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(ZephyrError, match="Redis Cluster, 2 seed nodes"):
        plan_redis(Settings(CACHE_URL=url), tmp_path)


def test_live_sentinel_and_cluster_urls_are_used_as_they_are(
    sentinel_topology: SentinelTopology, redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    settings = Settings(JOB_QUEUE_URL=sentinel_topology.url(), CACHE_URL=redis_cluster.url())
    plan = plan_redis(settings, tmp_path / "valkey")
    assert plan.server is None and plan.env == {}
    assert "Sentinel master 'mymaster' via 3 Sentinels, db 0" in plan.message
    assert "Redis Cluster, 6 seed nodes" in plan.message


def test_a_silent_local_cache_next_to_a_live_sentinel_gets_the_embedded_valkey(
    sentinel_topology: SentinelTopology, tmp_path: Path
) -> None:
    settings = Settings(
        JOB_QUEUE_URL=sentinel_topology.url(), CACHE_URL=f"redis://127.0.0.1:{free_port()}/1"
    )
    plan = plan_redis(settings, tmp_path / "valkey")
    try:
        assert plan.server is not None
        assert list(plan.env) == ["CACHE_URL"]  # the Sentinel URLs are left alone
    finally:
        plan.stop()


def test_config_show_says_what_each_redis_url_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "JOB_QUEUE_URL", "sentinel://:pw@10.0.0.1:26379;sentinel://:pw@10.0.0.2:26379/0"
    )
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    monkeypatch.setenv("CACHE_URL", "redis+cluster://:pw@10.0.1.1:7000,10.0.1.2:7000")
    plain = CliRunner().invoke(config, ["show"])
    assert plain.exit_code == 0, plain.output
    assert (
        "Sentinel master 'mymaster' via 2 Sentinels, db 0: 10.0.0.1:26379, 10.0.0.2:26379"
        in plain.output
    )
    assert "Redis Cluster, 2 seed nodes: 10.0.1.1:7000, 10.0.1.2:7000" in plain.output
    as_json = CliRunner().invoke(config, ["show", "--json"])
    shown = json.loads(as_json.output)
    assert shown["redis_topologies"]["JOB_RESULT_URL"]["kind"] == "sentinel"
    assert shown["redis_topologies"]["CACHE_URL"]["nodes"] == ["10.0.1.1:7000", "10.0.1.2:7000"]
    for output in (plain.output, as_json.output):
        assert "sentinel-secret" not in output and ":pw@" not in output
