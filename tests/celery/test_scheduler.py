"""@scheduler.cron / @scheduler.every: checked at decoration, entered in beat's schedule,
and stored in Redis by the redbeat scheduler with their time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab, schedule

from zephyr_celery import AsyncJob, SyncJob, create_app, job, set_app
from zephyr_celery._beat import BeatEntry, BeatScheduler, ZonedCrontab, beat_settings
from zephyr_celery._registry import registered_jobs
from zephyr_celery._scheduler import scheduler
from zephyr_core import ConfigError, Settings


async def test_a_cron_job_is_a_job_in_beats_schedule(redis_app: Any) -> None:
    @scheduler.cron("30 8 * * mon-fri", name="scheduler.weekday_digest")
    async def weekday_digest() -> str:
        return "digest"

    assert isinstance(weekday_digest, AsyncJob)
    assert await weekday_digest() == "digest"  # still runs inline
    entry = redis_app.conf.beat_schedule[weekday_digest.name]
    assert entry["task"] == weekday_digest.name
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].minute == {30}
    assert entry["schedule"].hour == {8}
    assert entry["schedule"].day_of_week == {1, 2, 3, 4, 5}
    assert weekday_digest.name in redis_app.tasks


def test_every_takes_seconds_or_a_timedelta(redis_app: Any) -> None:
    @scheduler.every(seconds=30, name="scheduler.heartbeat")
    def heartbeat() -> None:
        pass

    @scheduler.every(timedelta(minutes=2), name="scheduler.sweep")
    def sweep() -> None:
        pass

    assert isinstance(heartbeat, SyncJob)
    first = redis_app.conf.beat_schedule[heartbeat.name]["schedule"]
    second = redis_app.conf.beat_schedule[sweep.name]["schedule"]
    assert isinstance(first, schedule)
    assert first.run_every == timedelta(seconds=30)
    assert second.run_every == timedelta(minutes=2)


def test_job_options_can_be_given_to_the_schedule(redis_app: Any) -> None:
    @scheduler.cron("0 6 * * *", retry=0, queue="reports", priority=3, name="scheduler.early")
    async def early() -> None:
        pass

    assert (early.name, early.retry, early.queue, early.priority) == (
        "scheduler.early",
        0,
        "reports",
        3,
    )
    entry = redis_app.conf.beat_schedule["scheduler.early"]
    assert entry["options"] == {"queue": "reports", "priority": 3}


def test_a_bad_job_option_fails_when_the_schedule_is_made(redis_app: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        scheduler.every(seconds=5, timeout=float("nan"))
    assert caught.value.field == "timeout"


def test_options_of_an_existing_job_stay_on_its_job(redis_app: Any) -> None:
    @job(name="scheduler.own_options")
    async def own_options() -> None:
        pass

    with pytest.raises(TypeError, match="is already a job: give its options to its @job"):
        scheduler.every(seconds=5, retry=2)(own_options)


def test_an_existing_job_can_be_scheduled(redis_app: Any) -> None:
    @job(retry=0, name="reports.nightly")
    async def nightly() -> None:
        pass

    assert scheduler.cron("@daily")(nightly) is nightly
    entry = redis_app.conf.beat_schedule["reports.nightly"]
    assert entry["task"] == "reports.nightly"
    assert entry["schedule"].hour == {0}


def test_a_bad_expression_fails_at_decoration_and_defines_no_job(redis_app: Any) -> None:
    with pytest.raises(ValueError, match="hour field '25' is out of range") as caught:

        @scheduler.cron("0 25 * * *", name="scheduler.never")
        async def never() -> None:
            pass

    assert "accepted: 0-23" in str(caught.value)
    assert not [name for name in registered_jobs() if name.endswith(".never")]


def test_an_unknown_time_zone_fails_at_decoration(redis_app: Any) -> None:
    with pytest.raises(ValueError, match="tz='Europe/Pariss' is not a known IANA time zone"):
        scheduler.cron("0 9 * * *", tz="Europe/Pariss")


def test_a_job_that_needs_arguments_cannot_be_scheduled(redis_app: Any) -> None:
    with pytest.raises(TypeError, match="requires user_id; give them defaults"):

        @scheduler.every(seconds=5, name="scheduler.remind")
        async def remind(user_id: int, *, loud: bool = False) -> None:
            pass

    assert not [name for name in registered_jobs() if name.endswith(".remind")]


def test_one_job_cannot_have_two_schedules(redis_app: Any) -> None:
    @scheduler.every(seconds=10, name="scheduler.twice")
    async def twice() -> None:
        pass

    with pytest.raises(ValueError, match="is already scheduled \\(every 10s\\)"):
        scheduler.cron("0 * * * *")(twice)


def test_schedules_follow_a_new_app(redis_app: Any, redis_url: str) -> None:
    @scheduler.every(seconds=3, name="scheduler.follows")
    async def follows() -> None:
        pass

    other = create_app(Settings(JOB_QUEUE_URL=redis_url))
    try:
        set_app(other)
        assert follows.name in other.conf.beat_schedule
    finally:
        set_app(redis_app)
        other.close()


def test_the_schedule_lives_in_redis_with_its_time_zone(redis_app: Any, redis_url: str) -> None:
    paris = ZoneInfo("Europe/Paris")

    @scheduler.cron("0 9 * * *", tz="Europe/Paris", name="scheduler.paris_report")
    async def paris_report() -> None:
        pass

    @scheduler.cron("0 9 * * *", name="scheduler.utc_report")
    async def utc_report() -> None:
        pass

    redis_app.conf.update(beat_settings(Settings(JOB_QUEUE_URL=redis_url)))
    beat = BeatScheduler(app=redis_app)  # stores every entry in Redis, as beat does
    try:
        stored = BeatEntry.from_key(BeatEntry.generate_key(redis_app, paris_report.name), redis_app)
        plain = BeatEntry.from_key(BeatEntry.generate_key(redis_app, utc_report.name), redis_app)
    finally:
        beat.close()
    assert isinstance(stored.schedule, ZonedCrontab)
    assert stored.schedule.tz == paris
    assert not isinstance(plain.schedule, ZonedCrontab)
    # 07:30 UTC in January is 08:30 in Paris: the next run is 09:00 Paris, 08:00 UTC.
    last_run = datetime(2026, 1, 10, 7, 30, tzinfo=UTC)
    start, delta, _ = stored.schedule.remaining_delta(last_run)
    assert (start + delta).astimezone(UTC) == datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    # In July Paris is UTC+2: daylight saving time is followed.
    start, delta, _ = stored.schedule.remaining_delta(datetime(2026, 7, 10, 5, 30, tzinfo=UTC))
    assert (start + delta).astimezone(UTC) == datetime(2026, 7, 10, 7, 0, tzinfo=UTC)
    start, delta, _ = plain.schedule.remaining_delta(last_run)
    assert (start + delta).astimezone(UTC) == datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    assert stored.last_run_at is not None  # set when first stored: no run at start-up


def test_beat_keeps_its_schedule_in_the_result_redis() -> None:
    settings = Settings(
        JOB_QUEUE_BACKEND="rabbitmq",
        JOB_QUEUE_URL="amqp://guest:guest@127.0.0.1:5672//",
        JOB_RESULT_URL="redis://127.0.0.1:6390/3",
    )
    config = beat_settings(settings, max_interval=2, lock_timeout=10)
    assert config["redbeat_redis_url"] == "redis://127.0.0.1:6390/3"
    assert config["beat_scheduler"] == "zephyr_celery._beat:BeatScheduler"
    assert config["beat_max_loop_interval"] == 2
    assert config["redbeat_lock_timeout"] == 10
    # redbeat's default lock (5 x 300 s) would take 25 minutes to fail over.
    assert beat_settings(settings)["redbeat_lock_timeout"] <= 30


@pytest.mark.parametrize(
    ("max_interval", "lock_timeout", "match"),
    [(5, 9, "at least twice max_interval"), (0, 10, "must be positive")],
)
def test_a_lock_that_could_expire_between_ticks_is_refused(
    max_interval: float, lock_timeout: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        beat_settings(Settings(), max_interval=max_interval, lock_timeout=lock_timeout)
