"""Pickle from the broker is refused under every name: at create_app, at worker start,
and by a running worker that receives it from a plain Celery client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from zephyr_celery import create_app, job, testing
from zephyr_core import ConfigError, Settings

PICKLE_TYPE = "application/x-python-serialize"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("accept_content", ["json", PICKLE_TYPE]),
        ("accept_content", ["json", "pickle"]),
        ("accept_content", PICKLE_TYPE),
        ("result_accept_content", ["json", PICKLE_TYPE]),
        ("task_serializer", "pickle"),
        ("task_serializer", PICKLE_TYPE),
        ("result_serializer", PICKLE_TYPE),
        ("event_serializer", "pickle"),
    ],
)
def test_pickle_by_any_name_is_a_config_error_naming_the_setting(
    redis_url: str, key: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(JOB_QUEUE_URL=redis_url), **{key: value})
    assert caught.value.field == key
    message = str(caught.value)
    assert f"{key}=" in message and repr(value) in message
    assert "pickle" in message and "runs arbitrary code" in message
    assert "accepted: json, msgpack" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("accept_content", ["json", "x-custom"]), ("task_serializer", "marshal")],
)
def test_a_serializer_outside_the_allowlist_is_refused(
    redis_url: str, key: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(JOB_QUEUE_URL=redis_url), **{key: value})
    assert caught.value.field == key
    assert "not a known data-only serializer" in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"accept_content": ["json", "application/x-msgpack"], "task_serializer": "msgpack"},
        {"accept_content": ["yaml", "json"], "result_serializer": "yaml"},
        # Signed messages: allowed on purpose (the README's "Signed messages").
        {"accept_content": ["auth"], "task_serializer": "auth"},
    ],
)
def test_data_only_and_signed_serializers_are_accepted(
    redis_url: str, overrides: dict[str, Any]
) -> None:
    app = create_app(Settings(JOB_QUEUE_URL=redis_url), **overrides)
    for key, value in overrides.items():
        assert app.conf[key] == value


def test_a_worker_does_not_start_on_pickle_set_after_create_app(redis_url: str) -> None:
    app = create_app(Settings(JOB_QUEUE_URL=redis_url))
    app.conf.accept_content = ["json", PICKLE_TYPE]
    with pytest.raises(ConfigError) as caught, testing.worker(app):
        pytest.fail("the worker started")
    assert caught.value.field == "accept_content"


class _Payload:
    """Unpickling this makes a directory: proof that pickle from the broker ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


async def test_a_worker_refuses_a_pickle_message_from_a_plain_celery_client(
    jobs_app: Any, jobs_worker: Any, tmp_path: Path
) -> None:
    ran = tmp_path / "job-ran"
    unpickled = tmp_path / "unpickled"

    @job(name="security.record")
    def record(value: Any) -> str:
        ran.write_text(repr(value))
        return "ran"

    @job(name="security.after")
    def after() -> str:
        return "done"

    client = Celery("attacker", broker=jobs_app.conf.broker_url, set_as_current=False)
    client.conf.task_serializer = "pickle"
    client.conf.accept_content = ["pickle"]
    try:
        client.send_task("security.record", args=[_Payload(unpickled)])
    finally:
        client.close()
    # One worker thread takes messages in order: once the next job is done, the
    # pickle message has been received and dealt with.
    assert await (await after.delay()).wait(timeout=30) == "done"
    assert not unpickled.exists(), "the worker unpickled a message from the broker"
    assert not ran.exists(), "the worker ran a job sent as pickle"
