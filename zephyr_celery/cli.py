"""``zephyr jobs``: run workers, beat and Flower on your jobs, and inspect them.

Every command takes ``-A/--app MODULE`` like ``celery -A``: the module that defines
your jobs (importing it registers them), or ``module:attribute`` naming a Celery app or
a function that returns one (``zephyr_celery:get_app``). It defaults to the
``ZEPHYR_JOBS`` environment variable. The worker, beat and Flower run Celery's own
commands in this process, on the app built from your Settings; ``zephyr jobs celery``
runs any other Celery command the same way.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from zephyr_celery._app import app_settings
from zephyr_celery._beat import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_INTERVAL, SCHEDULER, beat_settings
from zephyr_celery._pool import DEFAULT_ASYNC_CONCURRENCY
from zephyr_celery._processes import core_count, run_workers, worker_name
from zephyr_core import ConfigError, ZephyrError, get_settings
from zephyr_core._imports import ModuleImportFailed, ModuleMissing, import_user_module

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
POOLS = ("async", "prefork", "threads", "solo")

#: What ``worker_pool`` names for ``-P async``: the pool class, importable by Celery.
ASYNC_POOL = "zephyr_celery:AsyncPool"

#: The longest job id ``retry`` accepts. Celery's ids are 36-character UUIDs; one chosen
#: with ``apply_async(job_id=...)`` may be longer, but not a page long.
MAX_JOB_ID = 255

#: Characters of a user's value quoted in a message: the rest is cut.
SHOWN_CHARS = 64

#: Celery options that choose the app or its URLs: ``zephyr jobs celery`` takes them
#: from ``-A`` and the settings instead (Celery would apply some to the environment only,
#: silently leaving our configured app as it was).
APP_OPTIONS = ("-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config")


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
    sentinel = settings.REDIS_SENTINEL_PASSWORD
    secrets = (sentinel.get_secret_value(),) if sentinel is not None else ()
    return scrub(text, settings.JOB_QUEUE_URL, settings.job_result_url, secrets=secrets)


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
    if not hasattr(module, attribute):
        raise BadUsage(f"-A/--app {spec!r}: {module_name!r} has no {attribute!r}")
    app = getattr(module, attribute)
    if not isinstance(app, Celery):
        app = _call_factory(spec, app)
    if not isinstance(app, Celery):
        raise BadUsage(
            f"-A/--app {spec!r}: {attribute!r} in {module_name!r} is not a Celery app "
            "or a function that returns one"
        )
    return app


def _call_factory(spec: str, factory: Any) -> Any:
    """What ``factory()`` returns: ``-A module:function`` names an app factory.

    Only a plain, synchronous function that takes no arguments is called: never a job
    (calling one would run it here), a class or a coroutine function.
    """
    if not inspect.isfunction(factory) or inspect.iscoroutinefunction(factory):
        return None
    try:
        inspect.signature(factory).bind()
    except TypeError:  # it needs arguments: not a factory we can call
        return None
    try:
        return factory()
    except ZephyrError:
        raise  # a bad setting: JobsGroup shows it as one line
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise CliError(
            f"-A/--app {spec!r}: calling it failed: {type(exc).__name__}: {reason}"
        ) from None


def use_running_up() -> None:
    """Reach the embedded Valkey of a ``zephyr up`` running in this directory.

    Its URLs apply only where the environment sets none: a URL you set always wins. Every
    ``zephyr jobs`` command does this, so a second worker or ``status`` run beside
    ``zephyr up`` reaches the same server.
    """
    from zephyr_core._valkey import running_env

    recorded = running_env()
    missing = {name: url for name, url in recorded.items() if name not in os.environ}
    if "JOB_QUEUE_URL" in recorded and "JOB_QUEUE_URL" in os.environ:
        # JOB_RESULT_URL follows JOB_QUEUE_URL by default: the broker you set keeps the
        # results beside it, not on the recorded server.
        missing.pop("JOB_RESULT_URL", None)
    if missing:
        os.environ.update(missing)
        get_settings.cache_clear()  # read again, with these URLs
        names = ", ".join(sorted(missing))
        click.secho(f"using the embedded Valkey of the zephyr up running here ({names})", err=True)


def app_option(required: bool) -> Callable[[F], F]:
    """The ``-A/--app`` option every command takes."""
    needed = "required" if required else "optional"
    return click.option(
        "-A",
        "--app",
        "app_spec",
        envvar="ZEPHYR_JOBS",
        metavar="MODULE",
        help=(
            "Module defining your jobs, or module:app / module:factory "
            f"({needed}; default $ZEPHYR_JOBS)."
        ),
    )


def shown(value: str) -> str:
    """``value`` quoted for a message, cut after :data:`SHOWN_CHARS` characters."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return repr(value[:SHOWN_CHARS]) + f"... ({len(value)} characters)"


class JobId(click.ParamType[str]):
    """A job id: printable, no spaces, at most :data:`MAX_JOB_ID` characters."""

    name = "job_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text:
            self.fail("a job id cannot be empty", param, ctx)
        if len(text) > MAX_JOB_ID:
            self.fail(
                f"{shown(text)} is not a job id: longer than {MAX_JOB_ID} characters "
                "(list failed jobs with: zephyr jobs status)",
                param,
                ctx,
            )
        if not text.isprintable() or any(char.isspace() for char in text):
            self.fail(
                f"{shown(text)} is not a job id: it holds spaces or control characters",
                param,
                ctx,
            )
        return text


class Seconds(click.FloatRange):
    """A number of seconds in a range; NaN, which every comparison lets through, is refused."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = float(super().convert(value, param, ctx))
        if math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


def _exit(code: Any) -> None:
    sys.exit(int(code or 0))


@click.group(cls=JobsGroup)
def jobs() -> None:
    """Background jobs: worker, scheduler (beat), Flower, status, retry and Celery's commands."""
    use_running_up()


@jobs.command()
@app_option(required=True)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1),
    help=f"Async pool: jobs at once per process (default {DEFAULT_ASYNC_CONCURRENCY}). "
    "Other pools: processes/threads (default JOB_WORKER_CONCURRENCY).",
)
@click.option(
    "--processes",
    type=click.IntRange(1),
    help="Async pool: worker processes, each with its own event loop (default: one per core).",
)
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: all jobs').")
@click.option(
    "-P",
    "--pool",
    type=click.Choice(POOLS),
    default="async",
    show_default=True,
    help="Execution pool: async runs async jobs as coroutines (sync jobs on threads beside "
    "them); prefork for CPU-bound sync jobs.",
)
@click.option("-n", "--hostname", help="Worker name, e.g. worker1@%h.")
@click.option("-l", "--loglevel", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def worker(
    app_spec: str | None,
    concurrency: int | None,
    processes: int | None,
    queues: str | None,
    pool: str,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Run a Celery worker on your jobs (until SIGTERM: running jobs finish first)."""
    if processes is not None and pool != "async":
        raise BadUsage(f"--processes is for the async pool; with -P {pool}, -c sets processes")
    app = load_app(app_spec, required=True)
    if queues is not None and not [q for q in queues.split(",") if q.strip()]:
        raise BadUsage(f"-Q/--queues {queues!r}: name at least one queue, e.g. -Q default,mail")
    if pool == "async":
        concurrency = concurrency or DEFAULT_ASYNC_CONCURRENCY
        # Celery's --pool choices are fixed at import: the class goes in by config.
        app.conf.worker_pool = ASYNC_POOL
    else:
        concurrency = (
            concurrency or app.conf.worker_concurrency or app_settings(app).JOB_WORKER_CONCURRENCY
        )
    # -E: task events on, so Flower sees every job whatever the app's configuration.
    argv = ["worker", "-E", f"--loglevel={loglevel}", f"--concurrency={concurrency}"]
    if queues:
        argv.append("--queues=" + ",".join(q.strip() for q in queues.split(",") if q.strip()))
    if pool != "async":
        argv.append(f"--pool={pool}")
    count = (processes or core_count()) if pool == "async" else 1
    if count == 1:
        if hostname:
            argv.append(f"--hostname={hostname}")
        _exit(app.worker_main(argv))

    def run(index: int) -> Any:
        return app.worker_main([*argv, f"--hostname={worker_name(hostname, index)}"])

    _exit(run_workers(count, run))


@jobs.command()
@app_option(required=True)
@click.option(
    "--max-interval",
    type=Seconds(0.1, 300),
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
    # The max interval travels in the configuration (beat_max_loop_interval): Celery's
    # own --max-interval takes whole seconds only.
    _exit(app.start(["beat", f"--scheduler={SCHEDULER}", f"--loglevel={loglevel}"]))


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
    type=Seconds(0.1, 60),
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
@click.argument("job_id", type=JobId())
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
                f"no failed job with id {shown(job_id)} (failed jobs are kept {kept:g} days; "
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


@jobs.command(
    "celery",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@app_option(required=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
def celery_command(app_spec: str | None, celery_args: tuple[str, ...]) -> None:
    """Run any Celery command on your app: inspect, events, purge, call, result, control...

    The app and its URLs come from -A and your settings (or the embedded Valkey of a
    `zephyr up` running in this directory), e.g.
    `zephyr jobs celery -A myapp.jobs -- inspect ping`.
    """
    args = list(celery_args)
    if not args:
        raise BadUsage(
            "name a Celery command, e.g. zephyr jobs celery -A myapp.jobs -- inspect ping"
        )
    for arg in args:
        if not arg.startswith("-"):
            break  # the command: what follows is its own
        option = arg.partition("=")[0]
        if option in APP_OPTIONS or arg[:2] in APP_OPTIONS:  # -Afoo, -bredis://...
            raise BadUsage(
                f"celery option {option[:SHOWN_CHARS]!r}: the app and its URLs come from "
                "-A/--app and your settings (JOB_QUEUE_URL, JOB_RESULT_URL)"
            )
    app = load_app(app_spec)
    try:
        code = app.start(args)
    except (click.ClickException, click.exceptions.Abort, ZephyrError):
        raise  # already one line each (JobsGroup, click)
    except Exception as exc:  # Celery's command failed its own way: one line, not its traceback
        command = next((arg for arg in args if not arg.startswith("-")), args[0])
        reason = " ".join(_scrubbed(str(exc)).split())  # Celery's messages span lines
        raise CliError(f"celery {command}: {type(exc).__name__}: {reason}") from None
    _exit(code)
