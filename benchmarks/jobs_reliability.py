"""Jobs lost when workers are SIGKILLed: kombu's Redis transport against ours.

The same run for both: 300 short jobs (20 ms) on the app `create_app()` builds
(acks_late, reject_on_worker_lost, visibility timeout 3 s), the whole worker
SIGKILLed and restarted 8 times. Only ``broker_transport`` differs: kombu's
``redis`` or ``zephyr_celery._redis.transport:Transport``.

After the last kill each run waits up to GRACE seconds for every job, then counts:
lost (ran never, and is neither queued nor in the unacked hash: gone for good),
late (not run yet but still in Redis), repeats, and the seconds from the last kill
to the last job's end.

Then a broker restart, with the default visibility timeout (an hour): 50 jobs of
1 s on an append-only Redis, SIGKILLed while two run and the rest wait in the
worker's prefetch, started again 2 s later; the same counts, and the seconds from
the restart to the last job's end. Usage: python benchmarks/jobs_reliability.py [runs]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers import RedisServer, wait_until  # noqa: E402
from zephyr_celery import create_app  # noqa: E402
from zephyr_core import Settings  # noqa: E402

TOTAL, KILLS, VISIBILITY, GRACE = 300, 8, 3, 60.0
RESTART_TOTAL, RESTART_JOB, OUTAGE = 50, 1.0, 2.0
TRANSPORTS = {"kombu redis": "redis", "zephyr": "zephyr_celery._redis.transport:Transport"}

WORKER_MODULE = """
import os, time
import redis
from zephyr_celery import create_app
app = create_app(broker_transport=os.environ["BENCH_TRANSPORT"])
counter = redis.Redis.from_url(os.environ["COUNTER_URL"])

@app.task(name="bench.work", ignore_result=True)
def work(job_id, seconds=0.02):
    time.sleep(seconds)
    counter.hincrby("runs", job_id, 1)
    counter.set("last_finish", time.time())
"""


def start_worker(directory: Path, env: dict[str, str], n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-c", "2",
         "-l", "WARNING", "-n", f"bench{n}@%h", "--without-mingle", "--without-gossip"],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def still_in_redis(client: redis.Redis, missing: set[int]) -> set[int]:
    """Ids of jobs not run yet that Redis still holds (queued or unacked)."""
    raw = list(client.lrange("celery", 0, -1)) + list(client.hvals("unacked"))
    held: set[int] = set()
    for item in raw:
        text = item.decode()
        for job_id in missing:
            if f'"id": "{job_id}"' in text:  # the task id is the job id
                held.add(job_id)
    return held


def one_run(transport: str, directory: Path) -> dict[str, float]:
    server = RedisServer(directory / "redis")
    server.start()
    try:
        url = server.url(0)
        client = redis.Redis.from_url(url)
        (directory / "benchapp.py").write_text(WORKER_MODULE)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(directory), str(REPO)]),
            "JOB_QUEUE_URL": url,
            "JOB_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "COUNTER_URL": url,
            "BENCH_TRANSPORT": transport,
        }
        settings = Settings(JOB_QUEUE_URL=url, JOB_VISIBILITY_TIMEOUT=VISIBILITY)
        app = create_app(settings, broker_transport=transport)
        for job_id in range(TOTAL):
            app.send_task("bench.work", args=[job_id], task_id=str(job_id), ignore_result=True)
        worker = start_worker(directory, env, 0)
        for k in range(1, KILLS + 1):
            target = TOTAL * k // (KILLS + 2)
            wait_until(lambda t=target: client.hlen("runs") >= t, 120, "progress")
            kill(worker)
            last_kill = time.time()
            worker = start_worker(directory, env, k)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: client.hlen("runs") >= TOTAL, GRACE, "all jobs")
        kill(worker)
        runs = {int(k): int(v) for k, v in client.hgetall("runs").items()}
        missing = set(range(TOTAL)) - set(runs)
        late = still_in_redis(client, missing)
        finish = float(client.get("last_finish") or last_kill)
        app.close()
        client.close()
        return {
            "lost": len(missing - late),
            "late": len(late),
            "repeats": sum(n - 1 for n in runs.values()),
            "recovery": finish - last_kill if not missing else float("inf"),
        }
    finally:
        server.stop()


def restart_run(transport: str, directory: Path) -> dict[str, float]:
    """RESTART_TOTAL jobs while the broker is SIGKILLed and started OUTAGE s later."""
    broker = RedisServer(directory / "broker", appendonly=True)
    counters = RedisServer(directory / "counters")  # nothing restarts this one
    broker.start()
    counters.start()
    try:
        url = broker.url(0)
        client = redis.Redis.from_url(counters.url(0))
        (directory / "benchapp.py").write_text(WORKER_MODULE)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOB_")},
            "PYTHONPATH": os.pathsep.join([str(directory), str(REPO)]),
            "JOB_QUEUE_URL": url,  # and the default visibility timeout
            "COUNTER_URL": counters.url(0),
            "BENCH_TRANSPORT": transport,
        }
        app = create_app(Settings(JOB_QUEUE_URL=url), broker_transport=transport)
        worker = start_worker(directory, env, 0)
        for job_id in range(RESTART_TOTAL):
            app.send_task(
                "bench.work", args=[job_id, RESTART_JOB], task_id=str(job_id), ignore_result=True
            )
        wait_until(lambda: client.hlen("runs") >= 2, 120, "the first jobs")
        broker.kill()
        time.sleep(OUTAGE)  # the outage itself
        broker.start()
        restarted = time.time()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: client.hlen("runs") >= RESTART_TOTAL, GRACE, "all jobs")
        kill(worker)
        runs = {int(k): int(v) for k, v in client.hgetall("runs").items()}
        missing = set(range(RESTART_TOTAL)) - set(runs)
        broker_client = redis.Redis.from_url(url)
        late = still_in_redis(broker_client, missing)
        finish = float(client.get("last_finish") or restarted)
        broker_client.close()
        app.close()
        client.close()
        return {
            "lost": len(missing - late),
            "late": len(late),
            "repeats": sum(n - 1 for n in runs.values()),
            "recovery": finish - restarted if not missing else float("inf"),
        }
    finally:
        broker.stop()
        counters.stop()


def summary(title: str, results: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{title}")
    for name, rows in results.items():
        lost = sum(r["lost"] for r in rows)
        late = sum(r["late"] for r in rows)
        bad_runs = sum(1 for r in rows if r["lost"] or r["late"])
        worst = max(r["recovery"] for r in rows)
        shown = f"{worst:.1f}s" if worst != float("inf") else f"> {GRACE:.0f}s"
        print(
            f"{name:12} lost {lost:3} jobs, late (> {GRACE:.0f}s) {late:3}, runs with a loss "
            f"or late job {bad_runs}/{len(rows)}, worst recovery {shown}, repeats "
            f"{sum(r['repeats'] for r in rows):.0f}"
        )
    ours = sum(r["lost"] + r["late"] for r in results["zephyr"])
    theirs = sum(r["lost"] + r["late"] for r in results["kombu redis"])
    print(f"jobs lost or late: zephyr {ours} vs kombu {theirs}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    kills: dict[str, list[dict[str, float]]] = {name: [] for name in TRANSPORTS}
    restarts: dict[str, list[dict[str, float]]] = {name: [] for name in TRANSPORTS}
    for i in range(runs):
        for name, transport in TRANSPORTS.items():
            for scenario, results in ((one_run, kills), (restart_run, restarts)):
                with tempfile.TemporaryDirectory() as tmp:
                    result = scenario(transport, Path(tmp))
                results[name].append(result)
                print(f"run {i + 1} {scenario.__name__:11} {name:12} {result}", flush=True)
    summary(
        f"worker SIGKILLs: {runs} runs x {TOTAL} jobs, {KILLS} SIGKILLs each, visibility "
        f"timeout {VISIBILITY}s (recovery: last kill to last job done)",
        kills,
    )
    summary(
        f"broker restart: {runs} runs x {RESTART_TOTAL} jobs of {RESTART_JOB:.0f}s, Redis "
        f"SIGKILLed for {OUTAGE:.0f}s, visibility timeout 3600s (recovery: restart to last "
        "job done)",
        restarts,
    )


if __name__ == "__main__":
    main()
