"""What ``zephyr jobs status`` reports: queues, workers, results by state, failures.

Everything is read from the real parts: queue depths from the broker (a passive queue
declaration, which works on Redis and RabbitMQ alike), workers from a broadcast with a
short timeout, states from the results kept in the result backend, and failed jobs from
the failure store. URLs are shown with their password masked, beside what they point
at (one server, a Sentinel-managed master, RabbitMQ); on Sentinel every read goes to
the master the Sentinels name now.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
from celery import Celery
from kombu.exceptions import KombuError

from zephyr_celery._app import app_settings
from zephyr_celery._failures import failure_store
from zephyr_core import Settings, ZephyrError, mask_url
from zephyr_core._redis_clients import sync_client
from zephyr_core._topology import parse_redis_url

#: Results read at most when counting states: a large backend is sampled, not walked.
MAX_RESULTS = 10_000


@dataclass
class FailureSummary:
    """One failed job as ``status`` lists it."""

    id: str
    name: str
    exc_type: str
    message: str
    attempts: int
    failed_at: float


@dataclass
class JobsStatus:
    """A snapshot of the job system."""

    broker: str
    backend: str
    broker_topology: str  # e.g. "Sentinel master 'mymaster' via 3 Sentinels, db 0"
    backend_topology: str
    queues: dict[str, int]
    workers: dict[str, int]  # worker name -> jobs running on it now
    states: dict[str, int]
    results_counted: int
    results_truncated: bool
    failures_total: int
    recent_failures: list[FailureSummary] = field(default_factory=list)

    def to_json(self) -> str:
        """The snapshot as JSON, for scripts (``status --json``)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def scrub(text: str, *urls: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the passwords of ``urls`` (and ``secrets``) replaced by ``***``.

    Every password a URL holds goes, a Sentinel URL's included (Redis's in each part,
    the Sentinels' own in ``sentinel_password=``), in both spellings: percent-encoded
    (``p%23ss``) and decoded (``p#ss``), as a client library may show it.
    """
    found = [secret for secret in secrets if secret]
    for url in urls:
        found += _passwords(url)
    for password in found:
        for spelling in {password, unquote(password)}:
            text = text.replace(spelling, "***")
    return text


def _passwords(url: str) -> list[str]:
    found: list[str] = []
    for part in url.split(";"):  # each Sentinel of a list, as written
        try:
            password = urlsplit(part).password
        except ValueError:
            continue
        if password:
            found.append(password)
    try:
        topology = parse_redis_url(url, require_master_name=False)
    except ValueError:  # not a Redis URL (RabbitMQ's, say): its parts said it all
        return found
    for password in (topology.password, topology.sentinel_password):
        if password:
            found += [password, quote(password, safe="")]
    return found


def describe_url(url: str, settings: Settings) -> str:
    """What ``url`` points at, in words: ``describe()`` of its Redis topology."""
    try:
        return settings.redis_topology(url).describe()
    except ValueError:
        scheme = urlsplit(url).scheme
        return "RabbitMQ" if scheme.startswith("amqp") else f"{scheme} broker"


def broker_url(app: Celery) -> str:
    """The broker URL as the user wrote it (kombu's form of a Sentinel URL differs)."""
    from zephyr_celery._broker import SENTINEL_TRANSPORT, SENTINELS_TRANSPORT

    if str(app.conf.broker_transport) in (SENTINEL_TRANSPORT, SENTINELS_TRANSPORT):
        return app_settings(app).JOB_QUEUE_URL
    return str(app.conf.broker_url)


def queue_names(app: Celery, extra: tuple[str, ...] = ()) -> list[str]:
    """The default queue, the configured ones, every queue a registered job names, ``extra``."""
    names = {str(app.conf.task_default_queue)}
    for queue in app.conf.task_queues or ():
        names.add(str(queue.name))
    for task in list(app.tasks.values()):
        queue = getattr(task, "queue", None)
        if isinstance(queue, str) and queue:
            names.add(queue)
    names.update(extra)
    return sorted(names)


def queue_depths(app: Celery, names: list[str]) -> dict[str, int]:
    """Messages waiting in each queue (0 for a queue that does not exist yet)."""
    depths: dict[str, int] = {}
    broker = broker_url(app)
    with app.connection_for_read() as conn:
        failures = (KombuError, OSError, *conn.connection_errors, *conn.channel_errors)
        try:
            conn.ensure_connection(max_retries=1, timeout=5)
            for name in names:
                channel = conn.channel()
                try:
                    depths[name] = int(channel.queue_declare(queue=name, passive=True)[1])
                except conn.channel_errors:  # not declared yet: nothing was ever sent
                    depths[name] = 0
                finally:
                    channel.close()
        except failures as exc:
            raise ZephyrError(
                f"cannot reach the broker at {mask_url(broker)}: {scrub(str(exc), broker)}"
            ) from exc
    return depths


def workers_online(app: Celery, timeout: float) -> dict[str, int]:
    """Workers that answered within ``timeout`` seconds, with the jobs each runs now."""
    replies = app.control.inspect(timeout=timeout).active() or {}
    return {name: len(jobs or []) for name, jobs in sorted(replies.items())}


def result_states(app: Celery, limit: int = MAX_RESULTS) -> tuple[dict[str, int], int, bool]:
    """Count kept results by state: ``(counts, results read, whether more exist)``."""
    url = str(app.conf.result_backend)
    prefix = getattr(app.backend, "task_keyprefix", "celery-task-meta-")
    if isinstance(prefix, bytes):
        prefix = prefix.decode()
    counts: Counter[str] = Counter()
    read = 0
    truncated = False
    try:
        topology = app_settings(app).redis_topology(url)
    except ValueError as exc:
        raise ZephyrError(f"cannot read results at {mask_url(url)}: {exc}") from None
    client = sync_client(topology, socket_timeout=10, socket_connect_timeout=5)
    assert isinstance(client, redis.Redis)  # results are never on a Cluster (Settings)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            if read + len(batch) >= limit:
                truncated = True
                break
            batch.append(key)
            if len(batch) == 500:
                read += _count_batch(client, batch, counts)
                batch = []
        read += _count_batch(client, batch, counts)
    except redis.RedisError as exc:
        raise ZephyrError(
            f"cannot read results at {mask_url(url)}: {scrub(str(exc), url)}"
        ) from exc
    finally:
        client.close()
    return dict(sorted(counts.items())), read, truncated


def _count_batch(client: redis.Redis, keys: list[bytes], counts: Counter[str]) -> int:
    if not keys:
        return 0
    read = 0
    for raw in client.mget(keys):
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            state = json.loads(raw).get("status")
        except (ValueError, AttributeError):
            continue
        if isinstance(state, str):
            counts[state] += 1
            read += 1
    return read


def collect_status(
    app: Celery,
    *,
    extra_queues: tuple[str, ...] = (),
    timeout: float = 1.0,
    failures: int = 10,
) -> JobsStatus:
    """Gather a :class:`JobsStatus` for ``app`` from its broker, workers and backend.

    Raises:
        ZephyrError: the broker or the result backend does not answer.
    """
    settings = app_settings(app)
    broker = broker_url(app)
    backend = str(app.conf.result_backend)
    depths = queue_depths(app, queue_names(app, extra_queues))
    states, counted, truncated = result_states(app)
    store = failure_store(app)
    try:
        total = store.count()
        recent = [
            FailureSummary(r.id, r.name, r.exc_type, r.message, r.attempts, r.failed_at)
            for r in store.recent(failures)
        ]
    except redis.RedisError as exc:
        raise ZephyrError(
            f"cannot read failed jobs at {mask_url(backend)}: {scrub(str(exc), backend)}"
        ) from exc
    finally:
        store.close()
    return JobsStatus(
        broker=mask_url(broker),
        backend=mask_url(backend),
        broker_topology=describe_url(broker, settings),
        backend_topology=describe_url(backend, settings),
        queues=depths,
        workers=workers_online(app, timeout),
        states=states,
        results_counted=counted,
        results_truncated=truncated,
        failures_total=total,
        recent_failures=recent,
    )


def render(status: JobsStatus, console: Any) -> None:
    """Print ``status`` as tables on a rich ``console``."""
    from rich.table import Table

    # Plain text: a URL's brackets or a master's quoted name are not rich markup.
    console.print(f"broker: {status.broker}", markup=False, highlight=False)
    console.print(f"  {status.broker_topology}", markup=False, highlight=False)
    console.print(f"results: {status.backend}", markup=False, highlight=False)
    console.print(f"  {status.backend_topology}", markup=False, highlight=False)
    queues = Table("queue", "waiting", title="Queues", title_justify="left")
    for name, depth in status.queues.items():
        queues.add_row(name, str(depth))
    console.print(queues)
    if status.workers:
        workers = Table("worker", "running", title="Workers online", title_justify="left")
        for name, running in status.workers.items():
            workers.add_row(name, str(running))
        console.print(workers)
    else:
        console.print("Workers online: none answered")
    more = "+" if status.results_truncated else ""
    states = Table(
        "state",
        "jobs",
        title=f"Results kept ({status.results_counted}{more})",
        title_justify="left",
    )
    for state, count in status.states.items():
        states.add_row(state, str(count))
    console.print(states)
    # A list, not a table: ids stay whole (to copy into `retry`) at any width.
    console.print(
        f"Failed jobs ({status.failures_total}; retry one with: zephyr jobs retry ID)",
        style="italic",
    )
    for f in status.recent_failures:
        console.print(f"  {f.id}  {_when(f)}  attempts: {f.attempts}", highlight=False)
        console.print(f"    {f.name}", highlight=False, markup=False)
        console.print(f"    {f.exc_type}: {f.message}", highlight=False, markup=False)


def _when(failure: FailureSummary) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(failure.failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
