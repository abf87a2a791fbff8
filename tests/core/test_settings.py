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
