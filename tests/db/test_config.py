"""Bad input fails at construction, naming the key; passwords never show (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from zephyr_core import ConfigError, Settings
from zephyr_db import ConnectionPool, DatabaseCluster

URL = "postgresql://app:s3cret@db:5432/shop"


def refused(**kwargs: Any) -> ConfigError:
    kwargs.setdefault("write_url", URL)
    with pytest.raises(ConfigError) as raised:
        DatabaseCluster(**kwargs)
    assert "s3cret" not in str(raised.value)
    return raised.value


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"write_url": "mysql://app:s3cret@db/shop"}, "write_url", "scheme must be one of"),
        ({"write_url": "postgresql://app:s3cret@db:99999/shop"}, "write_url", "Port out of range"),
        ({"write_url": "postgresql://app:s3cret@db:5432,:x/shop"}, "write_url", "port"),
        ({"write_url": 5432}, "write_url", "expected a PostgreSQL URL string"),
        ({"read_urls": URL}, "read_urls", "expected a list of URLs, not a string"),
        ({"read_urls": [URL, "postgresql://app:s3cret@/shop"]}, "read_urls[1]", "no host"),
        ({"pool_config": {"min_size": 20, "max_size": 5}}, "pool_config.min_size",
         "above max_size=5"),
        ({"pool_config": {"max_sise": 5}}, "pool_config.max_sise", "did you mean max_size?"),
        ({"pool_config": {"comand_timeout": 5}}, "pool_config.comand_timeout",
         "did you mean command_timeout?"),
        ({"pool_config": {"min_size": "2"}}, "pool_config.min_size", "expected int"),
        ({"pool_config": {"timeout": 0}}, "pool_config.timeout", "greater than 0"),
        ({"pool_config": {"statement_cache_size": -1}}, "pool_config.statement_cache_size",
         "0 or more"),
        ({"pool_config": [("min_size", 1)]}, "pool_config", "expected a dict"),
        ({"strategy": "random"}, "strategy", "round_robin, least_connections"),
        ({"strategy": "least_connection"}, "strategy", "did you mean least_connections?"),
        ({"fallback": "replica"}, "fallback", "primary, raise"),
        ({"max_lag": 0}, "max_lag", "greater than 0"),
        ({"read_your_writes": -1}, "read_your_writes", "0 or more"),
        ({"health_interval": "2s"}, "health_interval", "number of seconds"),
        ({"write_url": URL + "?target_session_attrs=writable"}, "write_url", "read-write"),
    ],
)  # fmt: skip
def test_bad_cluster_input_names_the_field(kwargs: dict[str, Any], field: str, says: str) -> None:
    error = refused(**kwargs)
    assert error.field == field
    assert field.split(".")[-1].split("[")[0] in str(error) and says in str(error)


def test_a_malformed_url_is_shown_masked() -> None:
    error = refused(write_url="postgresql://app:s3cret@db:port/shop")
    assert "postgresql://app:***@db:port/shop" in str(error)


def test_connection_pool_checks_its_keys_too() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'max_querys' \(did you mean max_queries\?\)"
    ):
        ConnectionPool(URL, max_querys=5)
    with pytest.raises(ConfigError, match="min_size=11 is above max_size=10"):
        ConnectionPool(URL, min_size=11)


def test_reprs_and_status_hide_the_password() -> None:
    cluster = DatabaseCluster(URL, [URL.replace("db:", "replica:")])
    assert "s3cret" not in repr(cluster) and "db:5432" in repr(cluster)
    assert repr(ConnectionPool(URL)) == "<ConnectionPool postgresql://app:***@db:5432/shop closed>"
    assert "s3cret" not in str([s.as_dict() for s in cluster.status()])


def test_multi_host_write_url_gets_target_session_attrs_read_write() -> None:
    cluster = DatabaseCluster("postgresql://app:s3cret@h1:5432,h2:5433/shop")
    assert cluster.primary.pool.url.endswith("?target_session_attrs=read-write")
    assert cluster.primary.name == "h1:5432,h2:5433"
    kept = DatabaseCluster("postgresql://h1,h2/shop?target_session_attrs=primary")
    assert kept.primary.pool.url.endswith("target_session_attrs=primary")
    assert kept.primary.name == "h1:5432,h2:5432"


def test_from_settings_reads_database_url_and_read_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@h1:5432,h2:5432/shop")
    monkeypatch.setenv("DATABASE_READ_URLS", "postgresql://r1/shop, postgresql://r2:6432/shop")
    cluster = DatabaseCluster.from_settings(pool_config={"max_size": 3}, max_lag=5)
    assert [r.name for r in cluster.replicas] == ["r1:5432", "r2:6432"]
    assert cluster.primary.name == "h1:5432,h2:5432" and cluster.max_lag == 5
    assert cluster.primary.pool.config == {"max_size": 3, "min_size": 3}


def test_from_settings_without_database_url_says_so() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        DatabaseCluster.from_settings(Settings())


def test_settings_accept_a_multi_host_database_url_and_check_each_host() -> None:
    assert (
        Settings(DATABASE_URL="postgresql://a:1,b:2/db").DATABASE_URL == "postgresql://a:1,b:2/db"
    )
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings(DATABASE_URL="postgresql://u:pw@a:1,b:x/db")
