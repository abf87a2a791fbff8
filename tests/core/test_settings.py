"""Settings: the proposal's fields and defaults, env/.env reading, clear validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from zephyr_core import ConfigError, Settings, get_settings

# The proposal's "Infrastructure Settings", verbatim.
PROPOSAL_DEFAULTS = {
    "CONTAINER_REGISTRY": None,
    "CONTAINER_TAG": "latest",
    "CONTAINER_HEALTH_CHECK": True,
    "JOB_QUEUE_BACKEND": "redis",
    "JOB_QUEUE_URL": "redis://localhost:6379/0",
    "JOB_WORKER_CONCURRENCY": 4,
    "JOB_RETRY_ATTEMPTS": 3,
    "JOB_RETRY_DELAY": 60,
    "CACHE_BACKEND": "redis",
    "CACHE_URL": "redis://localhost:6379/1",
    "CACHE_DEFAULT_TIMEOUT": 300,
    "CACHE_KEY_PREFIX": "zephyr",
    "LOAD_BALANCER_STRATEGY": "round_robin",
    "LOAD_BALANCER_HEALTH_CHECK": True,
    "LOAD_BALANCER_HEALTH_INTERVAL": 30,
    "K8S_NAMESPACE": "default",
    "K8S_REPLICAS": 3,
    "K8S_CPU_REQUEST": "250m",
    "K8S_CPU_LIMIT": "500m",
    "K8S_MEMORY_REQUEST": "256Mi",
    "K8S_MEMORY_LIMIT": "512Mi",
    "AUTOSCALING_ENABLED": False,
    "AUTOSCALING_MIN_REPLICAS": 2,
    "AUTOSCALING_MAX_REPLICAS": 10,
    "AUTOSCALING_CPU_TARGET": 70,
    "AUTOSCALING_MEMORY_TARGET": 80,
}


def test_defaults_are_the_proposals() -> None:
    settings = Settings()
    assert {name: getattr(settings, name) for name in PROPOSAL_DEFAULTS} == PROPOSAL_DEFAULTS


def test_platform_fields_and_result_url_default() -> None:
    settings = Settings()
    assert settings.ZEPHYR_APP is None
    assert settings.JOB_RESULT_URL == settings.JOB_QUEUE_URL  # same Redis server
    assert settings.JOB_VISIBILITY_TIMEOUT > settings.JOB_RETRY_DELAY
    assert settings.DATABASE_URL is None and settings.DATABASE_READ_URLS == []
    rabbit = Settings(JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL="amqp://guest:guest@h:5672//")
    assert rabbit.JOB_RESULT_URL == rabbit.CACHE_URL  # results need Redis; not the AMQP URL


def test_reads_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("K8S_REPLICAS=5\nK8S_NAMESPACE=from-dotenv\n")
    monkeypatch.setenv("K8S_NAMESPACE", "production")  # the environment beats .env
    monkeypatch.setenv("DATABASE_READ_URLS", "postgresql://r1/db, postgresql://r2/db")
    monkeypatch.setenv("AUTOSCALING_ENABLED", "true")
    settings = get_settings()
    assert settings.K8S_REPLICAS == 5
    assert settings.K8S_NAMESPACE == "production"
    assert settings.DATABASE_READ_URLS == ["postgresql://r1/db", "postgresql://r2/db"]
    assert settings.AUTOSCALING_ENABLED is True
    assert get_settings() is settings  # one instance per process


BAD_VALUES = [
    # field, value, what the message must say is accepted
    ("K8S_REPLICAS", "-1", "greater than or equal to 0"),
    ("LOAD_BALANCER_STRATEGY", "random", "round_robin, least_connections, weighted"),
    ("JOB_QUEUE_BACKEND", "kafka", "redis, rabbitmq"),
    ("CACHE_BACKEND", "memcached", "redis, memory, dummy"),
    ("CACHE_URL", "redis//localhost", "redis://"),
    ("CACHE_URL", "redis://localhost:99999/0", "Port out of range"),
    ("JOB_QUEUE_URL", "http://localhost:6379/0", "redis://"),
    ("JOB_RESULT_URL", "redis://localhost/zero", "database must be a number"),
    ("K8S_CPU_REQUEST", "250x", "250m"),
    ("K8S_CPU_LIMIT", "fast", "250m"),
    ("K8S_MEMORY_LIMIT", "1Gb", "1Gi"),
    ("K8S_MEMORY_REQUEST", "256mb", "256Mi"),
    ("ZEPHYR_APP", "shop.app", "myapp.main:app"),
    ("JOB_WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
    ("AUTOSCALING_CPU_TARGET", "120", "less than or equal to 100"),
]


@pytest.mark.parametrize(("field", "value", "accepted"), BAD_VALUES)
def test_bad_value_names_field_value_and_what_is_accepted(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(field, value)
    with pytest.raises(ConfigError) as caught:
        Settings()
    message = str(caught.value)
    assert f"{field}={value!r}" in message or f"{field}={value}" in message
    assert accepted in message
    assert caught.value.field == field
    assert "\n" not in message  # one line


def test_min_replicas_above_max_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"AUTOSCALING_MIN_REPLICAS=12: must not exceed"):
        Settings(AUTOSCALING_MIN_REPLICAS=12, AUTOSCALING_MAX_REPLICAS=10)


def test_amqp_url_with_redis_backend_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="set JOB_QUEUE_BACKEND=rabbitmq"):
        Settings(JOB_QUEUE_URL="amqp://guest:guest@localhost:5672//")


def test_flower_auth_must_be_user_colon_password() -> None:
    with pytest.raises(ConfigError, match=r"FLOWER_BASIC_AUTH='\*\*\*': expected 'user:password'"):
        Settings(FLOWER_BASIC_AUTH="admin")
    assert Settings(FLOWER_BASIC_AUTH="admin:pw").FLOWER_BASIC_AUTH is not None


def test_several_bad_fields_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(K8S_REPLICAS=-2, K8S_MEMORY_LIMIT="1Gb")
    assert len(caught.value.problems) == 2


def test_passwords_never_appear_in_repr_or_display() -> None:
    settings = Settings(
        JOB_QUEUE_URL="redis://:queue-secret@redis:6379/0",
        CACHE_URL="redis://user:cache-secret@redis:6379/1",
        DATABASE_URL="postgresql://app:db-secret@primary/db",
        DATABASE_READ_URLS=["postgresql://app:replica-secret@replica/db"],
        FLOWER_BASIC_AUTH="admin:flower-secret",
    )
    shown = repr(settings) + str(settings) + str(settings.display())
    for secret in ("queue-secret", "cache-secret", "db-secret", "replica-secret", "flower-secret"):
        assert secret not in shown
    assert "redis://user:***@redis:6379/1" in shown
    assert settings.CACHE_URL == "redis://user:cache-secret@redis:6379/1"  # still usable


def test_secret_in_a_rejected_url_is_masked() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(JOB_QUEUE_URL="redis://:hunter2@localhost:notaport/0")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("char", ["#", "/", "?", "@", "%"])
def test_a_password_with_url_delimiters_never_reaches_a_config_error(char: str) -> None:
    from zephyr_cache._config import parse

    url = f"redis://app:p{char}ssw0rd@cache:6379/x"  # database "x": always an error
    with pytest.raises(ConfigError) as settings_error:
        Settings(CACHE_URL=url)
    with pytest.raises(ConfigError) as cache_error:
        parse({"default": {"backend": "redis", "url": url}}, Settings())
    for caught in (settings_error, cache_error):
        assert "ssw0rd" not in str(caught.value)
        assert "redis://app:***@cache:6379/x" in str(caught.value)


def test_a_bad_queue_url_does_not_hide_the_other_bad_fields() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(
            JOB_QUEUE_URL="http://queue",
            K8S_REPLICAS=-1,
            DATABASE_URL="http://x",
            AUTOSCALING_MIN_REPLICAS=12,
            AUTOSCALING_MAX_REPLICAS=10,
        )
    fields = [line.split("=", 1)[0] for line in caught.value.problems]
    assert sorted(fields) == [
        "AUTOSCALING_MIN_REPLICAS",
        "DATABASE_URL",
        "JOB_QUEUE_URL",
        "K8S_REPLICAS",
    ]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("DATABASE_URL", "http://x", "postgresql://, postgres://"),
        ("DATABASE_URL", "postgresql://app:hunter2@/app", "no host"),
        ("DATABASE_READ_URLS", "[1,2", "JSON list of URLs or URLs separated by commas"),
        ("DATABASE_READ_URLS", "http://x", "postgresql://, postgres://"),
        ("DATABASE_READ_URLS", "postgresql://r1/db,mysql://u:hunter2@r2/db", "URL 2 of 2"),
    ],
)
def test_database_urls_are_validated(field: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**{field: value})
    assert caught.value.field == field
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_database_read_urls_as_a_json_list() -> None:
    urls = ["postgresql://r1/db", "postgres://u:pw@r2:5433/db"]
    import json

    assert urls == Settings(DATABASE_READ_URLS=json.dumps(urls)).DATABASE_READ_URLS


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"K8S_CPU_REQUEST": "2", "K8S_CPU_LIMIT": "500m"}, "K8S_CPU_REQUEST"),
        ({"K8S_CPU_REQUEST": "1001m", "K8S_CPU_LIMIT": "1"}, "K8S_CPU_REQUEST"),
        ({"K8S_MEMORY_REQUEST": "1Gi", "K8S_MEMORY_LIMIT": "512Mi"}, "K8S_MEMORY_REQUEST"),
        ({"K8S_MEMORY_REQUEST": "1G", "K8S_MEMORY_LIMIT": "953Mi"}, "K8S_MEMORY_REQUEST"),
    ],
)
def test_a_request_above_its_limit_is_refused(values: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**values)
    assert caught.value.field == field
    assert "must not exceed" in str(caught.value)


def test_a_request_equal_to_its_limit_is_fine() -> None:
    settings = Settings(
        K8S_CPU_REQUEST="1", K8S_CPU_LIMIT="1000m", K8S_MEMORY_REQUEST="1Gi", K8S_MEMORY_LIMIT="1Gi"
    )
    assert settings.K8S_CPU_REQUEST == "1"


def test_an_unknown_setting_variable_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zephyr_core._unknown_env import WARNED_ENV

    monkeypatch.setenv(WARNED_ENV, "")  # restored after the test: warnings set it
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CACHE_DEFAULT_TIMOUT=5\n")
    monkeypatch.setenv("JOB_WORKER_CONCURENCY", "8")
    monkeypatch.setenv("FLOWER_PURGE_OFFLINE_WORKERS", "60")  # one of Flower's own
    monkeypatch.setenv("FLOWER_PORT", "5556")  # read by `zephyr up`
    with caplog.at_level("WARNING", logger="zephyr_core.settings"):
        Settings()
        Settings()
    assert [record.getMessage() for record in caplog.records] == [
        "unknown setting CACHE_DEFAULT_TIMOUT ignored (did you mean CACHE_DEFAULT_TIMEOUT?)",
        "unknown setting JOB_WORKER_CONCURENCY ignored (did you mean JOB_WORKER_CONCURRENCY?)",
    ]


def test_the_cli_warns_about_an_unknown_setting_without_failing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "zephyr_core", "config", "check"],
        env={**os.environ, "K8S_REPLICA": "5"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("K8S_REPLICA ") == 1
    assert "did you mean K8S_REPLICAS?" in result.stderr
