"""A worker through a Sentinel fail-over: our transport against kombu's ``sentinel://``.

The same run for both: a Sentinel topology (a master, one replica, three Sentinels
that declare a master down after 1 s), a real prefork worker (concurrency 2) on the
app ``create_app()`` builds (acks_late, visibility timeout an hour). Twenty 1 s jobs
are sent (the worker runs two and prefetches the rest), then a 0.1 s job every 0.2 s
through our transport, from before the kill until AFTER_KILL seconds after it. Once
the replica holds the worker's unacked records, the master is SIGKILLed. Only the
worker's ``broker_transport`` differs: kombu's ``sentinel`` or ours
(``zephyr_celery._redis.sentinel_transport:SentinelTransport``).

Per run, in seconds after the kill:

- promoted: the replica is master and takes writes (the Sentinels' part, the same for
  both: a floor for everything else);
- resumed: the worker starts a job again (the first start more than 1 s after the
  kill: no fail-over completes sooner, a job starting earlier was handed to a child
  before the worker saw the connection drop). Issue #15 bounds it at about 10 s;
- held back: the last of the twenty jobs the worker held finishes. kombu leaves held
  jobs in the ``unacked`` hash until the visibility timeout: what is still missing
  GRACE seconds later is counted instead, with what is left queued and unacked, and
  whether the worker process is still alive.

Usage: python benchmarks/jobs_failover_worker.py [runs]   (median of runs, default 3)
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import row  # noqa: E402
from tests.servers import RedisServer, SentinelTopology, wait_until  # noqa: E402
from zephyr_celery import create_app  # noqa: E402
from zephyr_core import Settings  # noqa: E402

HELD, HELD_NAP, NAP, EVERY, AFTER_KILL, GRACE = 20, 1.0, 0.1, 0.2, 10.0, 40.0

MODULE = textwrap.dedent(
    """
    import os
    import time

    import redis

    from zephyr_celery import get_app, job

    app = get_app()
    if os.environ["VARIANT"] == "kombu":  # kombu's own Sentinel transport, all else equal
        options = dict(app.conf.broker_transport_options)
        options.pop("sentinel_kwargs", None)
        app.conf.update(
            broker_url=os.environ["KOMBU_URL"],
            broker_transport="sentinel",
            broker_transport_options=options,
        )
    counter = redis.Redis.from_url(os.environ["COUNTER_URL"])


    @job(name="bench_failover.nap", retry=0)
    def nap(i: int, seconds: float) -> int:
        counter.hsetnx("started_at", i, time.time())
        time.sleep(seconds)
        counter.hsetnx("finished_at", i, time.time())
        return i
    """
)


def kombu_url(topology: SentinelTopology) -> str:
    """The topology as kombu reads it: every Sentinel with the database on each part."""
    return ";".join(f"sentinel://{host}:{port}/0" for host, port in topology.sentinel_addresses())


def replica_caught_up(topology: SentinelTopology) -> bool:
    """The replica has the master's unacked records (the worker's held jobs)."""
    master_address = topology.master_address()
    replica = next(node for node in topology.servers if node.address != master_address)
    clients = [redis.Redis(*master_address), redis.Redis("127.0.0.1", replica.port)]
    try:
        counts = [client.hlen("unacked") for client in clients]
    finally:
        for client in clients:
            client.close()
    return counts[0] > 0 and counts[0] == counts[1]


def one_run(variant: str, work: Path, counter_url: str) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_failover_jobs.py").write_text(MODULE)
    topology = SentinelTopology(work / f"topology-{variant}")
    topology.start()
    counter = redis.Redis.from_url(counter_url)
    counter.flushdb()
    url = topology.url(0)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "REDIS_"))},
        "PYTHONPATH": os.pathsep.join([str(work), str(REPO)]),
        "JOB_QUEUE_URL": url,
        "JOB_RESULT_URL": counter_url,  # results off the topology: the broker is measured
        "COUNTER_URL": counter_url,
        "KOMBU_URL": kombu_url(topology),
        "VARIANT": variant,
    }
    log = (work / f"worker-{variant}.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench_failover_jobs", "worker", "-P", "prefork",
         "-c", "2", "-l", "INFO"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    app = create_app(Settings(JOB_QUEUE_URL=url, JOB_RESULT_URL=counter_url))
    sent: dict[int, float] = {}
    stop = threading.Event()

    def produce() -> None:
        i = HELD
        while not stop.is_set():
            app.send_task("bench_failover.nap", args=(i, NAP))
            sent[i] = time.time()
            i += 1
            time.sleep(EVERY)

    producer = threading.Thread(target=produce, daemon=True)
    try:
        wait_until(lambda: b"ready." in (work / f"worker-{variant}.log").read_bytes(), 60, "worker")
        for i in range(HELD):
            app.send_task("bench_failover.nap", args=(i, HELD_NAP))
        held = set(range(HELD))
        producer.start()
        wait_until(lambda: counter.hlen("started_at") >= 2, 30, "jobs to run")
        wait_until(lambda: replica_caught_up(topology), 10, "the replica to catch up")
        killed_at = time.time()
        old = topology.kill_master()
        topology.wait_failover(old, timeout=30)
        promoted = time.time() - killed_at
        time.sleep(AFTER_KILL)  # the producer goes on meanwhile
        stop.set()
        producer.join()

        def started_at() -> dict[int, float]:
            return {int(k): float(v) for k, v in counter.hgetall("started_at").items()}

        def finished_at() -> dict[int, float]:
            return {int(k): float(v) for k, v in counter.hgetall("finished_at").items()}

        everything = held | set(sent)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: everything <= set(finished_at()), GRACE, "every job")
        starts, ends = started_at(), finished_at()
        stuck = held - set(ends)
        later = [t for t in starts.values() if t > killed_at + 1.0]
        host, port = topology.master_address()
        master = redis.Redis(host=host, port=port)

        def left() -> tuple[int, int]:
            return int(master.llen("celery")), int(master.hlen("unacked"))

        with contextlib.suppress(TimeoutError):  # the last acks may still be on their way
            wait_until(lambda: left() == (0, 0), 5, "an idle broker")
        queued, unacked = left()
        master.close()
        return {
            "promoted": promoted,
            "resumed": (min(later) - killed_at) if later else float("nan"),
            "held back": (max(ends[i] for i in held) - killed_at) if not stuck else float("nan"),
            "held, not run": float(len(stuck)),
            "not run at all": float(len(everything - set(ends))),
            "queued at the end": float(queued),
            "unacked at the end": float(unacked),
            "worker alive": float(worker.poll() is None),
        }
    finally:
        stop.set()
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        app.close()
        counter.close()
        topology.stop()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(tempfile.mkdtemp(prefix="jobs-failover-"))
    print(f"worker logs in {work}", flush=True)
    server = RedisServer(work / "counter")
    server.start()
    try:
        results: dict[str, list[dict[str, float]]] = {"ours": [], "kombu": []}
        for n in range(runs):
            for variant in ("ours", "kombu"):
                result = one_run(variant, work / f"run-{n}", server.url(0))
                results[variant].append(result)
                print(variant, {k: round(v, 2) for k, v in result.items()}, flush=True)
    finally:
        server.stop()
    print(f"\nSentinel fail-over under a prefork worker, median of {runs} runs (s after kill):")

    def med(variant: str, key: str) -> float:
        values = [r[key] for r in results[variant]]
        if any(math.isnan(v) for v in values):
            return float("nan")  # one run that never got there is the figure
        return statistics.median(values)

    promoted = med("ours", "promoted"), med("kombu", "promoted")
    print(row("master promoted (Sentinels)", *promoted, "s"))
    print(row("new jobs start again", med("ours", "resumed"), med("kombu", "resumed"), "s"))
    ours_held, kombu_held = med("ours", "held back"), med("kombu", "held back")
    print(row("jobs held at the kill all done", ours_held, kombu_held, "s"))
    keys = ("held, not run", "not run at all", "queued at the end", "unacked at the end")
    for key in (*keys, "worker alive"):
        print(
            f"{key + f' ({GRACE:.0f} s after)':<38} ours {med('ours', key):4.0f}   kombu "
            f"{med('kombu', key):4.0f}"
        )
    print("(nan: not every job ran within the grace; the visibility timeout is an hour)")


if __name__ == "__main__":
    main()
