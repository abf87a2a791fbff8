"""Redis URL forms (single, Sentinel, Cluster): parsing, masking, settings. No servers."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zephyr_core import ConfigError, Settings, mask_url
from zephyr_core._topology import parse_redis_url
from zephyr_core._urls import redis_url_problem

SENTINEL = "sentinel://:pw@h1:26379;sentinel://:pw@h2:26380;sentinel://:pw@h3/2?master_name=m"


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "db", "description"),
    [
        ("redis://127.0.0.1:6379/0", "single", [("127.0.0.1", 6379)], 0,
         "single server 127.0.0.1:6379 db 0"),
        ("rediss://:pw@cache.internal/3", "single", [("cache.internal", 6379)], 3,
         "single server cache.internal:6379 db 3, TLS"),
        ("unix:///run/redis.sock?db=4", "single", [], 4,
         "single server unix socket /run/redis.sock db 4"),
        (SENTINEL, "sentinel", [("h1", 26379), ("h2", 26380), ("h3", 26379)], 2,
         "Sentinel master 'm' via 3 Sentinels, db 2"),
        ("sentinels://h1:5000?master_name=m", "sentinel", [("h1", 5000)], 0,
         "Sentinel master 'm' via 1 Sentinel, db 0, TLS"),
        ("redis+cluster://:pw@h1:7000,h2:7001,h3", "cluster",
         [("h1", 7000), ("h2", 7001), ("h3", 6379)], 0, "Redis Cluster, 3 seed nodes"),
        ("rediss+cluster://h1:7000/0", "cluster", [("h1", 7000)], 0,
         "Redis Cluster, 1 seed node, TLS"),
    ],
)  # fmt: skip
def test_each_url_form_parses_to_its_topology(
    url: str, kind: str, nodes: list[tuple[str, int]], db: int, description: str
) -> None:
    topology = parse_redis_url(url)
    assert (topology.kind, list(topology.nodes), topology.db) == (kind, nodes, db)
    assert topology.describe() == description
    assert topology.url == url


def test_the_sentinel_url_separates_the_redis_password_from_the_sentinels_one() -> None:
    topology = parse_redis_url(
        "sentinels://u:redis%40pw@h1;sentinels://u:redis%40pw@h2/1"
        "?master_name=m&sentinel_password=sent&sentinel_username=su&ssl_cert_reqs=CERT_NONE"
    )
    assert (topology.username, topology.password) == ("u", "redis@pw")
    assert (topology.sentinel_username, topology.sentinel_password) == ("su", "sent")
    assert topology.tls and topology.ssl_options == {"ssl_cert_reqs": "none"}


def test_the_url_wins_over_the_settings_master_name_and_sentinel_password() -> None:
    from_url = parse_redis_url(
        "sentinel://h?master_name=url&sentinel_password=a", master_name="s", sentinel_password="b"
    )
    assert (from_url.master_name, from_url.sentinel_password) == ("url", "a")
    from_settings = parse_redis_url("sentinel://h", master_name="s", sentinel_password="b")
    assert (from_settings.master_name, from_settings.sentinel_password) == ("s", "b")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sentinel://:pw@h1;sentinel://:pw@h2", "URL or set REDIS_SENTINEL_MASTER"),
        ("sentinel://:pw@h1;redis://:pw@h2?master_name=m", "same scheme"),
        ("sentinel://:pw@h1/1;sentinel://:pw@h2/2?master_name=m", "different databases"),
        ("sentinel://:pw@h1;sentinel://:other@h2?master_name=m", "different user names or"),
        ("sentinel://:pw@h1?master_name=m&socket_timeout=1", "parameter(s) socket_timeout"),
        ("sentinel://:pw@h1:0?master_name=m", "the port must be between 1 and 65535"),
        ("sentinel://:pw@h1/x?master_name=m", "the database must be a number"),
        ("sentinel://:pw@?master_name=m", "has no host"),
        ("redis+cluster://:pw@h1:7000/1", "only database 0"),
        ("redis+cluster://:pw@h1:7000,h2:x", "seed node 2 of 2"),
        ("redis+cluster://:pw@", "has no host"),
        ("rediss+cluster://:pw@h1?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
        ("memcached://:pw@h", "the scheme must be one of redis://, rediss://, unix://, sentinel://"),
    ],
)  # fmt: skip
def test_a_bad_url_is_refused_naming_the_problem_never_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert says in message
    assert "pw" not in message and "other" not in message
    assert mask_url(url) in message


def test_a_cluster_url_is_refused_where_one_keyspace_is_needed() -> None:
    with pytest.raises(ValueError, match="Celery's broker and result backend need one keyspace"):
        parse_redis_url("redis+cluster://h1:7000", allow_cluster=False)
    assert redis_url_problem("redis+cluster://h1:7000") is not None
    assert redis_url_problem("redis+cluster://h1:7000", allow_cluster=True) is None


@pytest.mark.parametrize(
    "url",
    [SENTINEL, "sentinel://h1", "sentinels://h1;sentinels://h2/0?master_name=x",
     "redis://h/0", "unix:///s.sock"],
)  # fmt: skip
def test_redis_url_problem_accepts_sentinel_urls_even_without_a_master_name(url: str) -> None:
    assert redis_url_problem(url) is None


def test_a_topology_repr_never_shows_a_password() -> None:
    topology = parse_redis_url("sentinel://:redispw@h1?master_name=m&sentinel_password=sentpw")
    for shown in (repr(topology), str(topology), topology.masked):
        assert "redispw" not in shown and "sentpw" not in shown


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (SENTINEL, SENTINEL.replace(":pw@", ":***@")),
        ("sentinel://h1;sentinel://h2/0?master_name=m&sentinel_password=s3cret",
         "sentinel://h1;sentinel://h2/0?master_name=m&sentinel_password=***"),
        ("redis://h/0?password=s3cret&db=1", "redis://h/0?password=***&db=1"),
        ("redis+cluster://:p@ss@h1:7000,h2:7001", "redis+cluster://:***@h1:7000,h2:7001"),
        ("no url here; nor: there", "no url here; nor: there"),
    ],
)  # fmt: skip
def test_mask_url_masks_every_part_of_a_list_and_password_queries(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_masks_a_sentinel_list_inside_an_error_message() -> None:
    message = "cannot reach sentinel://:pw1@h1:1;sentinel://:pw2@h2:2/0?sentinel_password=pw3: down"
    shown = mask_url(message)
    assert "pw1" not in shown and "pw2" not in shown and "pw3" not in shown
    assert "h1:1" in shown and "h2:2" in shown


@given(st.text(min_size=1).filter(lambda s: "://" not in s), st.text(min_size=1))
def test_mask_url_never_leaks_a_sentinel_password(redis_password: str, sentinel: str) -> None:
    url = (
        f"sentinel://:{redis_password}@h1:26379;sentinel://:{redis_password}@h2:26379/0"
        f"?master_name=m&sentinel_password={quote(sentinel, safe='')}"
    )
    shown = mask_url(url)
    assert shown.startswith("sentinel://:***@h1:26379;sentinel://:***@h2:26379/0?")
    assert shown.endswith("sentinel_password=***")


# -- settings ------------------------------------------------------------------------------


def test_settings_take_sentinel_and_cluster_urls_where_each_works() -> None:
    settings = Settings(
        JOB_QUEUE_URL="sentinel://:pw@h1;sentinel://:pw@h2/0",
        JOB_RESULT_URL="sentinels://:pw@h1/1",
        CACHE_URL="redis+cluster://:pw@c1:7000,c2:7000",
        REDIS_SENTINEL_MASTER="mymaster",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
        JOB_ENQUEUE_REPLICAS=1,
        JOB_ENQUEUE_REPLICAS_TIMEOUT=0.5,
    )
    queue = settings.redis_topology(settings.JOB_QUEUE_URL)
    assert (queue.kind, queue.master_name, queue.sentinel_password) == (
        "sentinel",
        "mymaster",
        "sentinel-secret",
    )
    assert settings.redis_topology(settings.CACHE_URL).kind == "cluster"
    assert (settings.JOB_ENQUEUE_REPLICAS, settings.JOB_ENQUEUE_REPLICAS_TIMEOUT) == (1, 0.5)
    shown = repr(settings) + str(settings.display())
    assert "sentinel-secret" not in shown and ":pw@" not in shown
    assert settings.display()["REDIS_SENTINEL_PASSWORD"] == "***"


def test_the_defaults_add_no_replica_wait() -> None:
    settings = Settings()
    assert settings.JOB_ENQUEUE_REPLICAS == 0 and settings.JOB_ENQUEUE_REPLICAS_TIMEOUT == 1.0
    assert settings.REDIS_SENTINEL_MASTER is None and settings.REDIS_SENTINEL_PASSWORD is None


@pytest.mark.parametrize("field", ["JOB_QUEUE_URL", "JOB_RESULT_URL", "CACHE_URL"])
def test_a_sentinel_url_without_a_master_name_names_both_ways_to_give_it(field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**{field: "sentinel://:pw@h1;sentinel://:pw@h2/0"})
    message = str(caught.value)
    assert caught.value.field == field
    assert "?master_name=<name>" in message and "REDIS_SENTINEL_MASTER" in message
    assert ":pw@" not in message


@pytest.mark.parametrize("field", ["JOB_QUEUE_URL", "JOB_RESULT_URL"])
def test_celery_urls_refuse_a_cluster(field: str) -> None:
    with pytest.raises(ConfigError, match="need one keyspace") as caught:
        Settings(**{field: "redis+cluster://:pw@h1:7000"})
    assert caught.value.field == field and ":pw@" not in str(caught.value)


def test_a_cluster_cache_url_cannot_become_the_result_backend_by_default() -> None:
    with pytest.raises(ConfigError, match="set JOB_RESULT_URL") as caught:
        Settings(
            JOB_QUEUE_BACKEND="rabbitmq",
            JOB_QUEUE_URL="amqp://guest:guest@localhost:5672//",
            CACHE_URL="redis+cluster://h1:7000",
        )
    assert caught.value.field == "JOB_RESULT_URL"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"JOB_ENQUEUE_REPLICAS": -1}, "JOB_ENQUEUE_REPLICAS"),
        ({"JOB_ENQUEUE_REPLICAS_TIMEOUT": 0}, "JOB_ENQUEUE_REPLICAS_TIMEOUT"),
        ({"REDIS_SENTINEL_MASTER": "my master"}, "REDIS_SENTINEL_MASTER"),
    ],
)
def test_bad_ha_settings_are_refused_by_name(values: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_sentinel_password_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "env-secret")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "envmaster")
    monkeypatch.setenv("JOB_QUEUE_URL", "sentinel://h1:26379")
    settings = Settings()
    topology = settings.redis_topology(settings.JOB_QUEUE_URL)
    assert (topology.master_name, topology.sentinel_password) == ("envmaster", "env-secret")
    assert "env-secret" not in repr(settings) and "env-secret" not in repr(topology)
