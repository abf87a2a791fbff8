"""The Celery app: built from Settings with defaults that lose nothing, one per process.

``create_app`` maps Settings onto Celery's configuration. ``get_app`` is the
process-wide app that :func:`zephyr_celery.job` registers on; ``celery -A module``
and ``zephyr jobs worker -A module`` import the user's jobs module, which registers
every job on it, then use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from zephyr_celery._broker import broker_settings
from zephyr_celery._heartbeat import Heartbeat
from zephyr_celery._redis.backend import BACKEND_ALIASES
from zephyr_celery._serializers import SerializerGuard, check_serializers
from zephyr_core import Settings, get_settings

#: How long a job that exhausted its retries stays in the failure store, in seconds.
DEFAULT_FAILURE_RETENTION = 7 * 24 * 3600

#: Messages a worker process reserves ahead (times its concurrency). Jobs are short:
#: one round trip to the broker per job would cap throughput, while a large prefetch
#: lets one busy worker sit on jobs another could run. Unacked jobs a worker holds
#: go back to the queue when it stops (soft shutdown) or dies (visibility timeout).
DEFAULT_PREFETCH_MULTIPLIER = 8

#: Attempts at storing a result after the first, with exponential backoff (0.2 s
#: doubling up to 10 s); each attempt retries connection errors for about 19 s
#: itself (the Redis backend's retry policy): a worker keeps a finished job's
#: result through a Redis outage of about two minutes.
RESULT_STORE_RETRIES = 5

#: Seconds a cold shutdown (SIGQUIT, or a second Ctrl-C) still lets running jobs
#: finish before the worker requeues what is unfinished and exits; fits in
#: Kubernetes' default 30 s grace. A warm shutdown (SIGTERM) waits for running jobs
#: as long as they take; reserved, unacknowledged ones go back to the queue either way.
#: ``worker_enable_soft_shutdown_on_idle`` stays off: with it, every shutdown,
#: even of an idle worker, sleeps the whole timeout.
DEFAULT_SOFT_SHUTDOWN_TIMEOUT = 25.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration for ``settings``: what :func:`create_app` applies."""
    config: dict[str, Any] = {
        # Wire format: JSON both ways. Pickle from a broker runs code; never accept it.
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "result_backend": settings.job_result_url,
        # Lose nothing: acknowledge after the job ran, and put a job whose worker
        # process died back on the queue instead of acknowledging it anyway.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": DEFAULT_PREFETCH_MULTIPLIER,
        "worker_soft_shutdown_timeout": DEFAULT_SOFT_SHUTDOWN_TIMEOUT,
        "worker_enable_soft_shutdown_on_idle": False,
        # worker_cancel_long_running_tasks_on_connection_loss depends on the broker:
        # see zephyr_celery._broker.
        # A result that cannot be stored (Redis restarting) is stored again, with
        # backoff, for about two minutes: never reported as the job's failure.
        "result_backend_always_retry": True,
        "result_backend_max_retries": RESULT_STORE_RETRIES,
        "result_backend_base_sleep_between_retries_ms": 200,
        "result_backend_max_sleep_between_retries_ms": 10_000,
        "broker_connection_retry_on_startup": True,
        # What Flower and `zephyr jobs status` show.
        "result_extended": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Each job's queue and priority (task attributes for them are deprecated).
        "task_routes": ("zephyr_celery._registry.route_job",),
        "enable_utc": True,
        "timezone": "UTC",
        "zephyr_failure_retention": settings.JOB_FAILURE_RETENTION,
    }
    config.update(broker_settings(settings))
    # Results live on Redis whatever the broker; the same timeout there.
    config["result_backend_transport_options"] = {
        "visibility_timeout": settings.JOB_VISIBILITY_TIMEOUT
    }
    return config


def create_app(settings: Settings | None = None, **overrides: Any) -> Celery:
    """Build a Celery app from ``settings`` with safe defaults.

    Args:
        settings: Where the broker and result URLs come from; the process-wide
            :func:`zephyr_core.get_settings` when omitted.
        **overrides: Any Celery setting by its lowercase name
            (``worker_prefetch_multiplier=1``); they win over the defaults.

    Returns:
        An unconfigured-worker Celery app (nothing connects until it is used).

    Raises:
        ConfigError: An override names pickle (by any name or content type) or
            another serializer that is not plain data; see ``_serializers``.
    """
    settings = settings or get_settings()
    config = celery_config(settings)
    config.update(overrides)
    # Pickle under any name (or any serializer that is not plain data) is refused.
    check_serializers(config)
    app = Celery("zephyr", set_as_current=False)
    app.conf.update(config)
    app.steps["worker"].add(SerializerGuard)  # and again as a worker starts
    app.steps["consumer"].add(Heartbeat)  # ZEPHYR_HEARTBEAT_FILE, for the chart's probe
    # redis:// and rediss:// results are stored by our backend (one round trip per
    # result); picked by this app's loader, so result_backend keeps the user's URL.
    app.loader.override_backends = {**app.loader.override_backends, **BACKEND_ALIASES}
    # Kept off app.conf: remote control (`inspect conf`, Flower) sends conf as JSON.
    app.zephyr_settings = settings
    return app


_lock = threading.Lock()
_app: Celery | None = None
_app_hooks: list[Callable[[Celery], None]] = []


def get_app() -> Celery:
    """The process-wide app every ``@job`` registers on.

    Created on first use from :func:`zephyr_core.get_settings`. To run a worker with
    plain Celery, expose it in the jobs module (``app = get_app()``) and run
    ``celery -A jobs_module worker``.
    """
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = create_app()
                for hook in _app_hooks:
                    hook(_app)
    return _app


def set_app(app: Celery | None) -> None:
    """Make ``app`` the process-wide app and register every job on it.

    ``None`` forgets the current one: the next :func:`get_app` builds a fresh app
    from the settings of that moment (tests use this after changing the environment).
    """
    global _app
    with _lock:
        _app = app
        if app is not None:
            for hook in _app_hooks:
                hook(app)


def on_app(hook: Callable[[Celery], None]) -> None:
    """Call ``hook(app)`` whenever an app becomes the process-wide one."""
    _app_hooks.append(hook)
    if _app is not None:
        hook(_app)


def app_settings(app: Celery) -> Settings:
    """The Settings ``app`` was built from (the process-wide ones for a foreign app)."""
    settings = getattr(app, "zephyr_settings", None)
    return settings if isinstance(settings, Settings) else get_settings()
