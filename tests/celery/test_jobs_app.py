"""The app factory: safe defaults from Settings, overrides win, pickle never accepted."""

from __future__ import annotations

from typing import Any

import pytest

from zephyr_celery import create_app, get_app, job, set_app
from zephyr_celery._app import app_settings
from zephyr_core import ConfigError, Settings, get_settings


def test_defaults_lose_nothing_and_speak_json(redis_url: str) -> None:
    settings = Settings(JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=120)
    conf = create_app(settings).conf
    assert conf.broker_url == redis_url
    assert conf.result_backend == redis_url
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.broker_transport_options["visibility_timeout"] == 120
    assert conf.result_extended is True
    assert conf.worker_send_task_events is True
    assert conf.task_send_sent_event is True
    assert conf.worker_prefetch_multiplier == 8
    assert conf.worker_soft_shutdown_timeout > 0


def test_results_on_redis_with_a_rabbitmq_broker(rabbitmq_url: str, redis_url: str) -> None:
    settings = Settings(
        JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=rabbitmq_url, JOB_RESULT_URL=redis_url
    )
    conf = create_app(settings).conf
    assert conf.broker_url == rabbitmq_url
    assert conf.result_backend == redis_url


def test_overrides_win(redis_url: str) -> None:
    app = create_app(
        Settings(JOB_QUEUE_URL=redis_url), worker_prefetch_multiplier=1, task_acks_late=False
    )
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is False


@pytest.mark.parametrize("key", ["accept_content", "result_accept_content"])
def test_pickle_is_refused_even_as_an_override(redis_url: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(JOB_QUEUE_URL=redis_url), **{key: ["json", "pickle"]})
    assert key in str(caught.value) and "pickle" in str(caught.value)


def test_remote_control_can_send_the_config_as_json(redis_url: str) -> None:
    """Flower and `celery inspect conf` receive app.conf as JSON: it must encode."""
    import json

    from kombu.utils.json import dumps

    app = create_app(Settings(JOB_QUEUE_URL=redis_url))
    table = app.conf.table(with_defaults=False, censored=True)
    assert json.loads(dumps(table))["task_acks_late"] is True


def test_get_app_is_built_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("JOB_QUEUE_URL", redis_url)
    get_settings.cache_clear()
    set_app(None)
    try:
        app = get_app()
        assert app is get_app()
        assert app.conf.broker_url == redis_url
        assert app_settings(app).job_result_url == redis_url
    finally:
        set_app(None)


def test_set_app_registers_every_job_on_the_new_app(redis_url: str) -> None:
    first = create_app(Settings(JOB_QUEUE_URL=redis_url))
    set_app(first)
    try:

        @job(name="moves.with.the.app")
        async def moving() -> None: ...

        assert "moves.with.the.app" in first.tasks
        second = create_app(Settings(JOB_QUEUE_URL=redis_url))
        set_app(second)
        assert second.tasks["moves.with.the.app"].zephyr_job is moving
        assert moving.task.app is second
    finally:
        set_app(None)


def test_job_tasks_do_not_leak_into_unrelated_celery_apps(redis_app: Any) -> None:
    from celery import Celery

    @job(name="only.on.ours")
    def ours() -> None: ...

    plain = Celery("plain", set_as_current=False)
    assert "only.on.ours" not in plain.tasks
    assert "only.on.ours" in redis_app.tasks
