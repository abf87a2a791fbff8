"""The worker side of jobs on Redis Sentinel: workers, beat and status follow the master.

What a user relies on:

- ``JOB_QUEUE_URL=sentinel://...`` runs jobs through our transport (atomic pop into the
  unacked record) on the master the Sentinels name, and ``zephyr jobs status`` says
  which topology it reads (the session topology, never killed);
- the master SIGKILLed mid-stream, its replica promoted: a running ``zephyr jobs
  worker`` (async pool, and prefork) reconnects to the new master without a restart,
  every job enqueued once writes resume runs, and the jobs the worker held when the
  master died (running, prefetched) finish or run again well within the visibility
  timeout (an hour here): nothing waits for it because of the fail-over;
- beat (redbeat on Sentinel) keeps its lock and fires its schedule after the fail-over.

Each fail-over test has its own topology (one master, one replica, three Sentinels).
How long the worker takes to get going again is measured in
``benchmarks/sentinel_worker_failover.py``; the bound asserted here is only "long
before the visibility timeout".
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from kombu import Connection

from tests.celery.jobs_processes import Proc, Procs, child_env
from tests.servers import SentinelTopology, wait_until
from zephyr_celery import create_app, job, set_app, testing
from zephyr_celery._beat import beat_settings
from zephyr_celery._broker import SENTINEL_TRANSPORT, SENTINELS_TRANSPORT, broker_settings
from zephyr_celery._redis.sentinel_transport import SentinelTransport
from zephyr_celery._status import scrub
from zephyr_celery.cli import jobs
from zephyr_core import Settings, get_settings

#: The database of the session topology these tests use (others use other ones).
DB = 6

# -- settings: no server ---------------------------------------------------------------


def test_a_sentinel_url_picks_our_transport_on_every_sentinel() -> None:
    url = "sentinel://:r%40pw@h1:26379;sentinel://:r%40pw@h2:26380/3?master_name=jobs"
    settings = Settings(JOB_QUEUE_URL=url, REDIS_SENTINEL_PASSWORD="s-pw")
    config = broker_settings(settings)
    assert config["broker_transport"] == SENTINEL_TRANSPORT
    assert config["broker_url"].split(";") == [
        "zephyr-sentinel://:r%40pw@h1:26379/3",
        "zephyr-sentinel://:r%40pw@h2:26380/3",
    ]
    options = config["broker_transport_options"]
    assert options["master_name"] == "jobs"
    assert options["sentinel_kwargs"]["password"] == "s-pw"  # the Sentinels' own
    assert options["visibility_timeout"] == settings.JOB_VISIBILITY_TIMEOUT
    assert "broker_use_ssl" not in config
    # kombu switches to the next Sentinel URL between connection attempts and takes
    # the transport from its scheme: it must stay ours, with Redis's password and db.
    conn = Connection(config["broker_url"], transport=config["broker_transport"])
    try:
        for _ in range(3):
            assert conn.transport_cls in (SENTINEL_TRANSPORT, "zephyr-sentinel")
            assert isinstance(conn.transport, SentinelTransport)
            assert (conn.password, conn.virtual_host) == ("r@pw", "3")
            conn.maybe_switch_next()
        assert conn.as_uri().startswith("sentinel://")  # how Celery's banner shows it
    finally:
        conn.release()


def test_the_master_name_may_come_from_the_setting_and_tls_verifies() -> None:
    url = "sentinels://h1:26379;sentinels://h2:26379/0"
    config = broker_settings(Settings(JOB_QUEUE_URL=url, REDIS_SENTINEL_MASTER="m2"))
    assert config["broker_transport"] == SENTINELS_TRANSPORT
    assert config["broker_transport_options"]["master_name"] == "m2"
    assert config["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert config["broker_transport_options"]["sentinel_kwargs"]["ssl"] is True


def test_beat_uses_redbeats_sentinel_mode_without_a_password_in_its_url() -> None:
    url = "sentinel://:rpw@h1:26379;sentinel://:rpw@h2:26380/4?master_name=m&sentinel_password=spw"
    config = beat_settings(Settings(JOB_QUEUE_URL=url))
    assert config["redbeat_redis_url"] == "redis-sentinel://m/4"  # beat's banner shows it
    options = config["redbeat_redis_options"]
    assert options["sentinels"] == [["h1", 26379], ["h2", 26380]]
    assert (options["service_name"], options["db"], options["password"]) == ("m", 4, "rpw")
    assert options["sentinel_kwargs"]["password"] == "spw"


def test_status_messages_mask_every_password_of_a_sentinel_url() -> None:
    url = "sentinel://:r%23pw@h1:26379;sentinel://:r%23pw@h2:1/0?master_name=m&sentinel_password=s3"
    text = f"AUTH r#pw failed; sentinel s3 refused; {url}"
    masked = scrub(text, url)
    assert "r#pw" not in masked and "r%23pw" not in masked and "s3" not in masked


# -- on the session topology -------------------------------------------------------------


@job(name="sentinel_worker.double")
async def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def sentinel_app(sentinel_topology: SentinelTopology) -> Iterator[Any]:
    """The process-wide app on the session topology's database DB, emptied first."""
    host, port = sentinel_topology.master_address()
    redis.Redis(host=host, port=port, db=DB).flushdb()
    app = create_app(Settings(JOB_QUEUE_URL=sentinel_topology.url(DB)))
    set_app(app)
    try:
        yield app
    finally:
        set_app(None)
        app.close()


async def test_a_worker_runs_jobs_and_status_shows_the_topology(
    sentinel_app: Any, sentinel_topology: SentinelTopology
) -> None:
    with testing.worker(sentinel_app):
        handles = [await double.delay(i) for i in range(5)]
        assert [await h.wait(timeout=30) for h in handles] == [0, 2, 4, 6, 8]
        runner = CliRunner()
        shown = await asyncio.to_thread(runner.invoke, jobs, ["status", "--timeout", "2"])
        as_json = await asyncio.to_thread(runner.invoke, jobs, ["status", "--json"])
    host, port = sentinel_topology.master_address()
    master = redis.Redis(host=host, port=port, db=DB)
    try:
        # Every message went through the atomic pop and its ack removed the record.
        assert master.hlen("unacked") == 0 and master.llen("celery") == 0
    finally:
        master.close()
    assert shown.exit_code == 0, shown.output
    topology = f"Sentinel master 'mymaster' via 3 Sentinels, db {DB}"
    assert topology in shown.output
    assert "Workers online" in shown.output and "none answered" not in shown.output
    status = json.loads(as_json.output)
    assert status["broker_topology"] == status["backend_topology"] == topology
    assert status["broker"].startswith("sentinel://127.0.0.1:")  # the URL as given
    assert status["queues"]["celery"] == 0


async def test_tls_and_two_passwords(
    own_sentinel_topology: Callable[..., SentinelTopology], monkeypatch: pytest.MonkeyPatch
) -> None:
    """sentinels://: servers and Sentinels on TLS only, each with its own password."""
    topology = own_sentinel_topology(tls=True, password="r-pw", sentinel_password="s-pw")
    url = topology.url(0)  # trusts the topology's own certificate (ssl_ca_certs=)
    monkeypatch.setenv("JOB_QUEUE_URL", url)  # what the CLI masks
    get_settings.cache_clear()
    app = create_app(Settings(JOB_QUEUE_URL=url))
    set_app(app)
    try:
        with testing.worker(app):
            handle = await double.delay(21)
            assert await handle.wait(timeout=30) == 42
        shown = await asyncio.to_thread(CliRunner().invoke, jobs, ["status", "--timeout", "0.5"])
    finally:
        set_app(None)
        app.close()
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "Sentinel master 'mymaster' via 3 Sentinels, db 0, TLS" in shown.output
    assert "r-pw" not in shown.output and "s-pw" not in shown.output


# -- through a fail-over ------------------------------------------------------------------

MODULE = "sentinel_worker_jobs"
JOBS_MODULE = textwrap.dedent(
    """
    import asyncio
    import os
    import time

    import redis

    from zephyr_celery import get_app, job, scheduler

    app = get_app()
    _counter = []


    def counter():
        if not _counter:  # made in the process that runs the job
            _counter.append(redis.Redis.from_url(os.environ["COUNTER_URL"]))
        return _counter[0]


    @job(retry=0)
    async def nap(i: int, seconds: float) -> int:
        counter().hsetnx("started_at", i, time.time())
        counter().hincrby("starts", i, 1)
        await asyncio.sleep(seconds)
        counter().hincrby("finishes", i, 1)
        return i


    @scheduler.every(seconds=1)
    def tick() -> None:
        counter().rpush("ticks", time.time())
    """
)

#: Jobs sent before the kill (the worker runs 2 and holds the rest it prefetched),
#: and after the fail-over.
BEFORE, AFTER = 12, 8
NAP = 0.5
CONCURRENCY = 2


class FailoverRun:
    """A topology of this test's own, the jobs module, its processes and the counters."""

    def __init__(self, topology: SentinelTopology, procs: Procs, counter: redis.Redis) -> None:
        self.topology, self.procs, self.counter = topology, procs, counter
        self.module: Any = sys.modules[MODULE]
        self.started: list[Proc] = []

    def start(self, name: str, *args: str, ready: str) -> Proc:
        proc = self.procs.zephyr(name, "jobs", *args, "-A", MODULE)
        self.started.append(proc)
        wait_until(lambda: ready in proc.text(), 60, f"{name} to start")
        return proc

    def started_at(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in self.counter.hgetall("started_at").items()}

    def finished(self) -> set[int]:
        return {int(k) for k in self.counter.hkeys("finishes")}

    def master(self) -> redis.Redis:
        host, port = self.topology.master_address()
        return redis.Redis(host=host, port=port)

    def replica_caught_up(self) -> bool:
        """The replica holds the master's unacked records: a fail-over keeps them."""
        master_address = self.topology.master_address()
        replica = next(n for n in self.topology.servers if n.address != master_address)
        clients = [self.master(), redis.Redis(host="127.0.0.1", port=replica.port)]
        try:
            counts = [client.hlen("unacked") for client in clients]
        finally:
            for client in clients:
                client.close()
        return counts[0] > 0 and counts[0] == counts[1]

    def idle(self) -> bool:
        client = self.master()
        try:
            return not client.hlen("unacked") and not client.llen("celery")
        finally:
            client.close()

    def report(self) -> str:
        logs = "\n".join(f"== {p.log.name}\n{p.text()[-3000:]}" for p in self.started)
        return f"started {sorted(self.started_at())}, finished {sorted(self.finished())}\n{logs}"


@pytest.fixture
def failover_run(
    own_sentinel_topology: Callable[..., SentinelTopology],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FailoverRun]:
    topology = own_sentinel_topology()
    url = topology.url(0)
    (tmp_path / f"{MODULE}.py").write_text(JOBS_MODULE)
    for name in ("JOB_RESULT_URL", "JOB_VISIBILITY_TIMEOUT", "REDIS_SENTINEL_MASTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOB_QUEUE_URL", url)
    monkeypatch.syspath_prepend(str(tmp_path))
    get_settings.cache_clear()
    set_app(None)
    sys.modules.pop(MODULE, None)
    __import__(MODULE)
    counter = redis.Redis.from_url(redis_url)
    counter.delete("started_at", "starts", "finishes", "ticks")
    env = child_env(tmp_path, JOB_QUEUE_URL=url, COUNTER_URL=redis_url)
    try:
        with Procs(tmp_path, env, tmp_path / "logs") as procs:
            yield FailoverRun(topology, procs, counter)
    finally:
        counter.close()
        sys.modules[MODULE].app.close()
        sys.modules.pop(MODULE, None)
        set_app(None)
        get_settings.cache_clear()


async def kill_during_jobs(run: FailoverRun, worker: Proc) -> tuple[float, list[int]]:
    """BEFORE jobs sent and held by the worker; the master killed; AFTER jobs sent once
    writes resume. Returns the kill's time (time.time()) and the jobs sent after it."""
    nap = run.module.nap
    for i in range(BEFORE):
        await nap.delay(i, NAP)
    await asyncio.to_thread(wait_until, lambda: len(run.started_at()) >= 1, 30, "jobs to run")
    await asyncio.to_thread(wait_until, run.replica_caught_up, 10, "the replica to catch up")
    killed_at = time.time()
    old = await asyncio.to_thread(run.topology.kill_master)
    await asyncio.to_thread(run.topology.wait_failover, old)
    after = list(range(BEFORE, BEFORE + AFTER))
    for i in after:
        await nap.delay(i, NAP)
    assert worker.alive(), run.report()
    return killed_at, after


def assert_nothing_left_to_the_visibility_timeout(run: FailoverRun, killed_at: float) -> None:
    everything = set(range(BEFORE + AFTER))
    # The visibility timeout is an hour: 60 s means nothing waited for it.
    wait_until(lambda: run.finished() == everything, 60, f"every job to run; {run.report()}")
    wait_until(run.idle, 30, f"no unacked record left on the new master; {run.report()}")
    resumed = min(t for i, t in run.started_at().items() if i >= BEFORE) - killed_at
    print(f"first job sent after the fail-over started {resumed:.2f}s after the kill")
    duplicates = sum(int(v) for v in run.counter.hvals("starts")) - len(everything)
    print(f"{duplicates} jobs ran twice")
    assert duplicates <= CONCURRENCY, run.report()


@pytest.mark.slow
async def test_an_async_worker_and_beat_follow_the_master(failover_run: FailoverRun) -> None:
    run = failover_run
    beat = run.start(
        "beat", "scheduler", "--max-interval", "1", "--lock-timeout", "10", ready="Acquired lock"
    )
    worker = run.start(
        "worker", "worker", "-c", str(CONCURRENCY), "--processes", "1", ready="ready."
    )
    killed_at, _ = await kill_during_jobs(run, worker)
    assert_nothing_left_to_the_visibility_timeout(run, killed_at)
    assert "reconnected:" in worker.text(), run.report()

    def ticked_after_failover() -> bool:
        return any(float(t) > killed_at + 1 for t in run.counter.lrange("ticks", 0, -1))

    await asyncio.to_thread(wait_until, ticked_after_failover, 20, f"a tick; {run.report()}")
    assert beat.alive() and worker.alive(), run.report()
    client = run.master()
    try:
        assert client.exists("zephyr:beat::lock"), "beat does not hold its lock on the new master"
    finally:
        client.close()


@pytest.mark.slow
async def test_a_prefork_worker_follows_the_master(failover_run: FailoverRun) -> None:
    run = failover_run
    worker = run.start("worker", "worker", "-P", "prefork", "-c", str(CONCURRENCY), ready="ready.")
    killed_at, _ = await kill_during_jobs(run, worker)
    assert_nothing_left_to_the_visibility_timeout(run, killed_at)
    assert worker.alive(), run.report()


@pytest.mark.slow
def test_beat_takes_a_lost_lock_again(
    sentinel_topology: SentinelTopology, tmp_path: Path, redis_url: str
) -> None:
    """The lock's key gone (as a fail-over that lost it leaves it): beat takes it again
    and goes on sending, instead of ending on redbeat's LockNotOwnedError."""
    url = sentinel_topology.url(DB)
    master = redis.Redis(*sentinel_topology.master_address(), db=DB)
    master.flushdb()
    (tmp_path / f"{MODULE}.py").write_text(JOBS_MODULE)
    env = child_env(tmp_path, JOB_QUEUE_URL=url, COUNTER_URL=redis_url)
    try:
        with Procs(tmp_path, env, tmp_path / "logs") as procs:
            beat = procs.zephyr(
                "beat", "jobs", "scheduler", "-A", MODULE, "--max-interval", "1",
                "--lock-timeout", "10",
            )  # fmt: skip
            wait_until(lambda: "Acquired lock" in beat.text(), 60, "beat to take its lock")
            master.delete("zephyr:beat::lock")
            wait_until(lambda: "Acquired lock again" in beat.text(), 20, "beat to retake it")
            sent = master.llen("celery")
            wait_until(lambda: master.llen("celery") > sent, 10, "beat to send again")
            assert beat.alive(), beat.text()[-3000:]
            assert master.exists("zephyr:beat::lock")
    finally:
        master.close()
