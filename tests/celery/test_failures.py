"""The failure store on a real Redis: record, list newest first, get, remove, expire."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.servers import wait_until
from zephyr_celery import FailureRecord, FailureStore, create_app, failure_store
from zephyr_core import Settings


def record(job_id: str, failed_at: float, **changes: Any) -> FailureRecord:
    fields: dict[str, Any] = {
        "id": job_id,
        "name": "shop.jobs.charge",
        "args": [42],
        "kwargs": {"currency": "EUR"},
        "exc_type": "PaymentError",
        "message": "card declined",
        "traceback": "Traceback (most recent call last):\n  ...\nPaymentError: card declined\n",
        "attempts": 4,
        "failed_at": failed_at,
        "queue": "celery",
    }
    fields.update(changes)
    return FailureRecord(**fields)


@pytest.fixture
def store(redis_url: str) -> Iterator[FailureStore]:
    store = FailureStore(redis_url)
    yield store
    store.close()


def test_record_then_get_returns_every_field(store: FailureStore) -> None:
    failure = record("a1", 1_700_000_000.5)
    store.record(failure)
    assert store.get("a1") == failure
    assert store.get("unknown") is None


def test_recent_lists_newest_first_with_a_limit(store: FailureStore) -> None:
    now = time.time()
    for n in range(5):
        store.record(record(f"id{n}", now - 100 + n))
    assert [r.id for r in store.recent()] == ["id4", "id3", "id2", "id1", "id0"]
    assert [r.id for r in store.recent(limit=2)] == ["id4", "id3"]
    assert store.recent(limit=0) == []
    assert store.count() == 5


def test_remove_forgets_one(store: FailureStore) -> None:
    now = time.time()
    store.record(record("keep", now))
    store.record(record("drop", now + 1))
    assert store.remove("drop") is True
    assert store.remove("drop") is False
    assert [r.id for r in store.recent()] == ["keep"]


def test_records_expire_after_the_retention(redis_url: str) -> None:
    store = FailureStore(redis_url, retention=1)
    try:
        store.record(record("short", time.time()))
        assert store.get("short") is not None
        client = redis.Redis.from_url(redis_url)
        ttl = client.ttl("zephyr:jobs:failed:short")
        client.close()
        assert 0 < ttl <= 1
        wait_until(lambda: store.get("short") is None, 5, "the record to expire")
        assert store.recent() == []
    finally:
        store.close()


def test_default_retention_is_seven_days(redis_url: str) -> None:
    store = failure_store(create_app(Settings(JOB_QUEUE_URL=redis_url)))
    try:
        assert store.retention == 7 * 24 * 3600
        store.record(record("x", time.time()))
        client = redis.Redis.from_url(redis_url)
        assert 7 * 24 * 3600 - 60 < client.ttl("zephyr:jobs:failed:x") <= 7 * 24 * 3600
        client.close()
    finally:
        store.close()


def test_retention_is_configurable_on_the_app(redis_url: str) -> None:
    app = create_app(Settings(JOB_QUEUE_URL=redis_url), zephyr_failure_retention=3600)
    store = failure_store(app)
    assert store.retention == 3600
    store.close()


def test_retention_comes_from_the_settings(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_FAILURE_RETENTION", "86400")
    app = create_app(Settings(JOB_QUEUE_URL=redis_url))
    store = failure_store(app)
    assert store.retention == 86400
    store.close()


def test_the_store_lives_on_the_result_redis(redis_url: str, rabbitmq_url: str) -> None:
    app = create_app(
        Settings(JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=rabbitmq_url, JOB_RESULT_URL=redis_url)
    )
    store = failure_store(app)
    assert store.url == redis_url
    store.close()


def test_bad_retention_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="retention=0"):
        FailureStore(redis_url, retention=0)


def test_json_round_trip_is_exact() -> None:
    failure = record("z", 12.25, args=[{"a": [1, None]}], kwargs={}, queue=None)
    assert FailureRecord.from_json(failure.to_json()) == failure
