"""`zephyr jobs ...` through click's CliRunner: bad usage is one line and exit 2, a
failure one line and exit 1; `status` and `retry` read and act on the real Redis with a
real (in-process) worker."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from tests.celery.jobs_processes import with_password
from tests.servers import RedisServer, free_port
from zephyr_celery import JobFailed, create_app, failure_store, job, set_app, testing
from zephyr_celery._status import scrub
from zephyr_celery.testing import using_app
from zephyr_core import Settings
from zephyr_core.cli import zephyr


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(zephyr, ["jobs", *args], env=env)


def one_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    """Each command builds its app from this test's settings, not an earlier test's."""
    set_app(None)
    yield
    set_app(None)


@pytest.fixture
def jobs_module(tmp_path: Path) -> Path:
    """A directory (the current one) where tests write jobs modules."""
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("worker",), "error: no jobs module: pass -A/--app MODULE or set ZEPHYR_JOBS"),
        (("scheduler",), "error: no jobs module"),
        (("worker", "-A", "no_such_jobs"), "error: -A/--app 'no_such_jobs': no module named"),
        (("status", "-A", "no_such_jobs"), "no module named 'no_such_jobs'"),
        (("flower", "--address", "0.0.0.0"), "refusing to serve Flower on 0.0.0.0 without"),
        (("flower", "--address", "example.com"), "set FLOWER_BASIC_AUTH=user:password"),
        (("worker", "-A", "shop", "-c", "0"), "'-c' / '--concurrency': 0 is not in the range"),
        (("worker", "-A", "shop", "-P", "gevent"), "'gevent' is not one of 'async', 'prefork'"),
        (("worker", "-A", "shop", "-P", "prefork", "--processes", "2"), "--processes is for"),
        (("status", "--nope"), "No such option '--nope'"),
        (("status", "--timeout", "nan"), "'nan' is not a number of seconds"),
        (("scheduler", "-A", "shop", "--max-interval", "NaN"), "'NaN' is not a number of seconds"),
        (("retry",), "Missing argument 'JOB_ID'"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in one_line(result)


def test_a_broken_jobs_module_is_one_line_naming_the_bad_field(jobs_module: Path) -> None:
    (jobs_module / "broken_jobs.py").write_text(
        "from zephyr_celery._scheduler import scheduler\n\n"
        "@scheduler.cron('0 9 * * 8')\n"
        "async def report() -> None: ...\n"
    )
    result = run("scheduler", "-A", "broken_jobs")
    assert result.exit_code == 1
    line = one_line(result)
    assert "-A/--app 'broken_jobs': importing it failed: ValueError" in line
    assert "day of week field '8'" in line


def test_the_app_may_be_named_as_module_attribute(jobs_module: Path) -> None:
    (jobs_module / "not_an_app.py").write_text("app = 42\n")
    result = run("status", "-A", "not_an_app:app")
    assert result.exit_code == 2
    assert "'app' in 'not_an_app' is not a Celery app or a function" in one_line(result)


FACTORIES = """
from pathlib import Path

from zephyr_celery import create_app, job


def make_app():
    return create_app()


def broken_factory():
    raise RuntimeError("no config\\nfor this")


def needs_arguments(name):
    return create_app()


@job(name="factories.cleanup")
def cleanup() -> None:
    Path("cleaned").write_text("ran")
"""


def test_the_app_may_come_from_a_factory_function(jobs_module: Path) -> None:
    (jobs_module / "factories.py").write_text(FACTORIES)
    result = run("celery", "-A", "factories:make_app", "--", "report")
    assert result.exit_code == 0, result.output
    assert "broker_url" in result.output


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("factories:broken_factory", 1, "calling it failed: RuntimeError: no config for this"),
        ("factories:needs_arguments", 2, "is not a Celery app or a function that returns one"),
        ("factories:cleanup", 2, "is not a Celery app or a function that returns one"),
        ("factories:nothing", 2, "'factories' has no 'nothing'"),
    ],
)
def test_what_is_not_an_app_factory_is_one_line_and_never_run(
    jobs_module: Path, spec: str, code: int, message: str
) -> None:
    (jobs_module / "factories.py").write_text(FACTORIES)
    result = run("status", "-A", spec)
    assert result.exit_code == code, result.output
    assert message in one_line(result)
    assert not (jobs_module / "cleaned").exists()  # a job named by -A is not run


def test_scheduler_refuses_a_lock_shorter_than_two_ticks(jobs_module: Path) -> None:
    (jobs_module / "empty_jobs.py").write_text("")
    result = run("scheduler", "-A", "empty_jobs", "--max-interval", "5", "--lock-timeout", "6")
    assert result.exit_code == 2
    assert "lock_timeout (6s) must be at least twice max_interval (5s)" in one_line(result)


def test_flower_on_a_taken_port_is_one_line() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run("flower", "--port", str(port))
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in one_line(result)


def test_status_with_no_broker_is_one_line_with_the_password_masked() -> None:
    url = f"redis://zuser:s3cret@127.0.0.1:{free_port()}/0"
    result = run("status", env={"JOB_QUEUE_URL": url})
    assert result.exit_code == 1
    line = one_line(result)
    assert "cannot reach the broker at redis://zuser:***@127.0.0.1" in line
    assert "s3cret" not in line


def test_retry_of_an_unknown_id_is_one_line_and_exit_1(redis_url: str) -> None:
    result = run("retry", "no-such-job", env={"JOB_QUEUE_URL": redis_url})
    assert result.exit_code == 1
    assert "no failed job with id 'no-such-job'" in one_line(result)


@pytest.mark.parametrize(
    ("job_id", "reason"),
    [
        ("7" * 10_000, "longer than 255 characters"),
        ("", "a job id cannot be empty"),
        ("abc def", "spaces or control characters"),
        ("abc\ndef", "spaces or control characters"),
        ("abc\x1b[2Jdef", "spaces or control characters"),
    ],
)
def test_retry_refuses_what_cannot_be_a_job_id_quoting_it_cut(job_id: str, reason: str) -> None:
    result = run("retry", job_id)
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert reason in line
    assert len(line) < 300
    if len(job_id) > 64:
        assert f"'{job_id[:64]}'... (10000 characters)" in line


def test_retry_of_an_unknown_long_id_quotes_it_cut(redis_url: str) -> None:
    job_id = "f" * 255
    result = run("retry", job_id, env={"JOB_QUEUE_URL": redis_url})
    assert result.exit_code == 1
    line = one_line(result)
    assert f"no failed job with id '{'f' * 64}'... (255 characters)" in line
    assert len(line) < 300


async def test_retry_reenqueues_a_failed_job_with_its_arguments(
    redis_app: Any, redis_url: str
) -> None:
    switch = redis.Redis.from_url(redis_url)
    switch.set("broken", "yes")

    @job(retry=0, name="test_cli.double")
    async def double(x: int, *, label: str) -> str:
        if switch.get("broken"):
            raise RuntimeError("the mail server is down")
        return f"{label}={2 * x}"

    async with testing.worker(redis_app):
        handle = await double.delay(21, label="answer")
        with pytest.raises(JobFailed, match="the mail server is down"):
            await handle.wait(timeout=30)
        store = failure_store(redis_app)
        assert store.get(handle.id) is not None

        switch.delete("broken")
        # In a thread, as from another process: the event loop keeps serving results.
        result = await asyncio.to_thread(run, "retry", handle.id)
        assert result.exit_code == 0, result.output
        assert one_line(result) == f"re-enqueued {double.name} as job {handle.id}"
        # The same id: whoever holds the handle gets the new attempt's result.
        assert await handle.wait(timeout=30) == "answer=42"
        assert store.get(handle.id) is None
        store.close()
    switch.close()


async def test_status_reports_queues_workers_states_and_failures(own_redis: RedisServer) -> None:
    url = with_password(own_redis.url(0))
    app = create_app(Settings(JOB_QUEUE_URL=url))
    with using_app(app):

        @job(retry=0, name="test_cli.ok")
        async def ok() -> str:
            return "fine"

        @job(retry=0, name="test_cli.boom")
        async def boom() -> None:
            raise ValueError("no stock for item 7")

        async with testing.worker(app):
            await (await ok.delay()).wait(timeout=30)
            failed = await boom.delay()
            with pytest.raises(JobFailed):
                await failed.wait(timeout=30)
            # Three jobs on a queue no worker consumes.
            for _ in range(3):
                await ok.apply_async(queue="later")
            result = await asyncio.to_thread(run, "status", "--json", "-Q", "later")
            text = await asyncio.to_thread(run, "status", "-Q", "later")
        app.close()

    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "s3cret" not in text.output
    status = json.loads(result.output)
    assert status["broker"] == status["backend"] == url.replace("s3cret", "***")
    assert status["queues"] == {"celery": 0, "later": 3}
    assert len(status["workers"]) == 1
    assert status["states"]["SUCCESS"] == 1
    assert status["states"]["FAILURE"] == 1
    assert status["failures_total"] == 1
    (recent,) = status["recent_failures"]
    assert recent["id"] == failed.id
    assert recent["exc_type"] == "ValueError"
    assert recent["message"] == "no stock for item 7"
    assert text.exit_code == 0
    assert failed.id in text.output and "ValueError: no stock for item 7" in text.output


def test_status_waits_for_workers_only_as_long_as_asked(redis_url: str) -> None:
    result = run("status", "--json", "--timeout", "0.2", env={"JOB_QUEUE_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["workers"] == {}


async def test_status_measures_rabbitmq_queues(rabbitmq_url: str, redis_url: str) -> None:
    settings = Settings(
        JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=rabbitmq_url, JOB_RESULT_URL=redis_url
    )
    app = create_app(settings)
    with using_app(app):

        @job(retry=0, name="test_cli.parcel")
        async def parcel() -> None:
            pass

        for _ in range(2):
            await parcel.apply_async(queue="rabbit_later")
        result = await asyncio.to_thread(
            run, "status", "--json", "-Q", "rabbit_later,never_used", "--timeout", "0.3"
        )
        with app.connection_for_write() as conn:  # the vhost lives for the whole session
            conn.default_channel.queue_purge("rabbit_later")
        app.close()
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["queues"]["rabbit_later"] == 2
    assert status["queues"]["never_used"] == 0
    assert status["broker"] == rabbitmq_url.replace("guest:guest", "guest:***")


def test_status_messages_mask_a_password_in_either_spelling() -> None:
    url = "redis://zuser:p%23ss%2Fw0rd@127.0.0.1:1/0"
    text = "AUTH zuser p#ss/w0rd failed; url redis://zuser:p%23ss%2Fw0rd@127.0.0.1:1/0"
    assert scrub(text, url) == "AUTH zuser *** failed; url redis://zuser:***@127.0.0.1:1/0"
