"""``zephyr jobs``: run workers, beat and Flower on your jobs, and inspect them.

Every command takes ``-A/--app MODULE`` like ``celery -A``: the module that defines
your jobs (importing it registers them), or ``module:attribute`` naming a Celery app.
It defaults to the ``ZEPHYR_JOBS`` environment variable. The worker, beat and Flower
run Celery's own commands in this process, on the app built from your Settings.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from zephyr_celery._app import app_settings
from zephyr_celery._beat import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_INTERVAL, SCHEDULER, beat_settings
from zephyr_core import ConfigError, ZephyrError, get_settings
from zephyr_core._imports import ModuleImportFailed, ModuleMissing, import_user_module

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
POOLS = ("prefork", "threads", "solo")


class CliError(click.ClickException):
    """A command failed: one red line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


class BadUsage(CliError):
    """The command was called wrongly: one red line on stderr, exit status 2."""

    exit_code = 2


class JobsGroup(click.Group):
    """Turns our errors into one line each, whoever runs the command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # click's own: an unknown option, a bad value
            raise BadUsage(exc.format_message()) from None
        except ConfigError as exc:
            raise BadUsage(str(exc)) from None
        except ZephyrError as exc:
            raise CliError(str(exc)) from None
        except (redis.RedisError, OperationalError) as exc:  # a server that does not answer
            raise CliError(f"{type(exc).__name__}: {_scrubbed(str(exc))}") from None


def _scrubbed(text: str) -> str:
    from zephyr_celery._status import scrub

    try:
        settings = get_settings()
    except ZephyrError:  # then no URL of ours can be in the text
        return text
    return scrub(text, settings.JOB_QUEUE_URL, settings.job_result_url)


def load_app(spec: str | None, *, required: bool = False) -> Celery:
    """Import the jobs module named by ``spec`` and return the app its jobs are on.

    Args:
        spec: ``module`` (its ``@job`` functions register on the process-wide app) or
            ``module:attribute`` naming a Celery app; None for the app with no jobs.
        required: Whether a jobs module must be given (workers and beat need one).

    Raises:
        BadUsage: no module where one is required, or the module cannot be found.
        CliError: importing the module raised (a bad cron expression, say).
    """
    from zephyr_celery._app import get_app

    if not spec:
        if required:
            raise BadUsage("no jobs module: pass -A/--app MODULE or set ZEPHYR_JOBS")
        return get_app()
    module_name, _, attribute = spec.partition(":")
    try:
        module = import_user_module(module_name, option=f"-A/--app {spec!r}")
    except ModuleMissing as exc:
        raise BadUsage(str(exc)) from None
    except ModuleImportFailed as exc:
        raise CliError(str(exc)) from None
    if not attribute:
        return get_app()
    app = getattr(module, attribute, None)
    if not isinstance(app, Celery):
        raise BadUsage(f"-A/--app {spec!r}: {attribute!r} is not a Celery app in {module_name!r}")
    return app


def app_option(required: bool) -> Callable[[F], F]:
    """The ``-A/--app`` option every command takes."""
    needed = "required" if required else "optional"
    return click.option(
        "-A",
        "--app",
        "app_spec",
        envvar="ZEPHYR_JOBS",
        metavar="MODULE",
        help=f"Module defining your jobs, or module:celery_app ({needed}; default $ZEPHYR_JOBS).",
    )


def _exit(code: Any) -> None:
    sys.exit(int(code or 0))


@click.group(cls=JobsGroup)
def jobs() -> None:
    """Background jobs: worker, scheduler (beat), Flower, status and retry."""


@jobs.command()
@app_option(required=True)
@click.option("-c", "--concurrency", type=click.IntRange(1), help="Worker processes/threads.")
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: all jobs').")
@click.option("-P", "--pool", type=click.Choice(POOLS), help="Execution pool (default: prefork).")
@click.option("-n", "--hostname", help="Worker name, e.g. worker1@%h.")
@click.option("-l", "--loglevel", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def worker(
    app_spec: str | None,
    concurrency: int | None,
    queues: str | None,
    pool: str | None,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Run a Celery worker on your jobs (until SIGTERM: running jobs finish first)."""
    app = load_app(app_spec, required=True)
    if queues is not None and not [q for q in queues.split(",") if q.strip()]:
        raise BadUsage(f"-Q/--queues {queues!r}: name at least one queue, e.g. -Q default,mail")
    concurrency = (
        concurrency or app.conf.worker_concurrency or app_settings(app).JOB_WORKER_CONCURRENCY
    )
    # -E: task events on, so Flower sees every job whatever the app's configuration.
    argv = ["worker", "-E", f"--loglevel={loglevel}", f"--concurrency={concurrency}"]
    if queues:
        argv.append("--queues=" + ",".join(q.strip() for q in queues.split(",") if q.strip()))
    if pool:
        argv.append(f"--pool={pool}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    _exit(app.worker_main(argv))


@jobs.command()
@app_option(required=True)
@click.option(
    "--max-interval",
    type=click.FloatRange(0.1, 300),
    default=DEFAULT_MAX_INTERVAL,
    show_default=True,
    help="Longest sleep between two ticks (seconds); also how often the lock is renewed.",
)
@click.option(
    "--lock-timeout",
    type=click.IntRange(1),
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    help="Seconds before a standby scheduler takes over from one that died.",
)
@click.option("-l", "--loglevel", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def scheduler(app_spec: str | None, max_interval: float, lock_timeout: int, loglevel: str) -> None:
    """Run beat: sends @scheduler.cron/every jobs when due (one active instance at a time)."""
    app = load_app(app_spec, required=True)
    try:
        settings = beat_settings(
            app_settings(app), max_interval=max_interval, lock_timeout=lock_timeout
        )
    except ValueError as exc:
        raise BadUsage(f"--lock-timeout/--max-interval: {exc}") from None
    app.conf.update(settings)
    if not app.conf.beat_schedule:
        click.secho(
            f"warning: {app_spec} has no @scheduler.cron/@scheduler.every job; "
            "beat will have nothing to send",
            fg="yellow",
            err=True,
        )
    argv = ["beat", f"--scheduler={SCHEDULER}", f"--max-interval={max_interval:g}"]
    _exit(app.start([*argv, f"--loglevel={loglevel}"]))


@jobs.command()
@app_option(required=False)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=5555, show_default=True, envvar="FLOWER_PORT"
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but loopback needs FLOWER_BASIC_AUTH.",
)
def flower(app_spec: str | None, port: int, address: str) -> None:
    """Run Flower, the web monitor, with FLOWER_BASIC_AUTH=user:password when set."""
    from zephyr_celery._flower import check_exposure, run_flower
    from zephyr_core._serve_cli import ensure_port_free

    app = load_app(app_spec)
    settings = app_settings(app)
    check_exposure(address, settings)
    ensure_port_free(address or "0.0.0.0", port)
    _exit(run_flower(app, settings, port=port, address=address))


@jobs.command()
@app_option(required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("-Q", "--queues", help="More comma-separated queues to measure.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for workers to answer.",
)
def status(app_spec: str | None, as_json: bool, queues: str | None, timeout: float) -> None:
    """Show queue depths, workers online, jobs by state and recent failures."""
    from rich.console import Console

    from zephyr_celery._status import collect_status, render

    app = load_app(app_spec)
    extra = tuple(q.strip() for q in (queues or "").split(",") if q.strip())
    snapshot = collect_status(app, extra_queues=extra, timeout=timeout)
    if as_json:
        click.echo(snapshot.to_json())
    else:
        render(snapshot, Console(soft_wrap=True))


@jobs.command()
@app_option(required=False)
@click.argument("job_id")
def retry(app_spec: str | None, job_id: str) -> None:
    """Re-enqueue a failed job with its original arguments (same job id)."""
    from zephyr_celery._failures import failure_store

    app = load_app(app_spec)
    store = failure_store(app)
    try:
        record = store.get(job_id)
        if record is None:
            kept = store.retention / 86400
            raise CliError(
                f"no failed job with id {job_id!r} (failed jobs are kept {kept:g} days; "
                "list them with: zephyr jobs status)"
            )
        # Same id: whoever holds the job's handle sees the new attempt's result.
        app.backend.forget(record.id)
        options = {"queue": record.queue} if record.queue else {}
        app.send_task(
            record.name, args=record.args, kwargs=record.kwargs, task_id=record.id, **options
        )
        store.remove(record.id)
    finally:
        store.close()
    click.echo(f"re-enqueued {record.name} as job {record.id}")
