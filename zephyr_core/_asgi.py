"""The ASGI wrapper ``zephyr serve`` puts around an app: health routes and /metrics."""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from zephyr_core._exceptions import ConfigError
from zephyr_core._health import ReadinessCheck, checks_for, run_checks
from zephyr_core._imports import ModuleImportFailed, import_user_module
from zephyr_core._settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUESTS = Counter(
    "zephyr_http_requests_total", "HTTP requests served by the app", ["method", "status"]
)
LATENCY = Histogram("zephyr_http_request_duration_seconds", "Time to answer a request")
READY = Gauge("zephyr_ready_check", "1 when a readiness check passes, else 0", ["check"])


def load_app(path: str) -> ASGIApp:
    """Import ``module:attribute`` and check that it is an ASGI application."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {path!r}: expected 'module:attribute', like 'myapp.main:app'")
    try:
        module = import_user_module(module_name, option=f"--app {path!r}")
    except ModuleImportFailed as exc:
        raise ConfigError(str(exc)) from exc
    app: Any = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise ConfigError(
                f"--app {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(call):
        raise ConfigError(
            f"--app {path!r}: {type(app).__name__} object is not an ASGI application "
            "(expected an async callable taking scope, receive, send)"
        )
    return app  # type: ignore[no-any-return]


class HealthApp:
    """Answers /health, /health/live, /health/ready and /metrics; passes the rest on.

    These paths take precedence over routes of the same name in the wrapped app.
    """

    def __init__(self, app: ASGIApp, checks: list[ReadinessCheck]) -> None:
        self.app = app
        self.checks = checks
        self.started = time.monotonic()
        self.routes: dict[str, Callable[[], Awaitable[tuple[int, bytes, bytes]]]] = {
            "/health": self._summary,
            "/health/live": self._live,
            "/health/ready": self._ready,
            "/metrics": self._metrics,
        }
        for path, route in extra_routes().items():
            self.routes.setdefault(path, route)  # never over the health routes
        self.before_scrape = metric_hooks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.routes.get(scope["path"].rstrip("/") or "/")
        if route is not None and scope["method"] in ("GET", "HEAD"):
            status, content_type, body = await route()
            await _respond(send, status, content_type, body)
            return
        await self._timed(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            LATENCY.observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], str(status)).inc()

    async def _live(self) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", b'{"status":"ok"}'

    async def _check(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        results = await run_checks(self.checks)
        for name, result in results.items():
            READY.labels(name).set(1 if result["ok"] else 0)
        return all(r["ok"] for r in results.values()), results

    async def _ready(self) -> tuple[int, bytes, bytes]:
        ready, results = await self._check()
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": results}
        if not ready:
            body["failed"] = sorted(name for name, r in results.items() if not r["ok"])
        return (200 if ready else 503), b"application/json", json.dumps(body).encode()

    async def _summary(self) -> tuple[int, bytes, bytes]:
        from zephyr_core import __version__

        ready, results = await self._check()
        body = {
            "status": "ok"
            if ready and not any("degraded" in r for r in results.values())
            else "degraded",
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "checks": results,
        }
        return 200, b"application/json", json.dumps(body).encode()

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        for hook in self.before_scrape:  # async gauges (zephyr_deploy's MetricCollector)
            await hook()
        return 200, CONTENT_TYPE_LATEST.encode(), generate_latest()


Route = Callable[[], Awaitable[tuple[int, bytes, bytes]]]


def extra_routes() -> dict[str, Route]:
    """GET routes other packages add (``zephyr.routes``: a callable returning path -> route).

    A provider whose package's extra is not installed is skipped.
    """
    from importlib.metadata import entry_points

    routes: dict[str, Route] = {}
    for entry in entry_points(group="zephyr.routes"):
        try:
            routes.update(entry.load()())
        except ImportError:
            continue
    return routes


def metric_hooks() -> list[Callable[[], Awaitable[None]]]:
    """Coroutines awaited before each ``/metrics`` scrape (``zephyr.metrics`` group)."""
    from importlib.metadata import entry_points

    hooks = []
    for entry in entry_points(group="zephyr.metrics"):
        try:
            hooks.append(entry.load())
        except ImportError:
            continue
    return hooks


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wrap(app: ASGIApp) -> HealthApp:
    """Wrap ``app`` with the health routes and the checks current Settings call for."""
    return HealthApp(app, checks_for(get_settings()))


def create_app() -> HealthApp:
    """uvicorn factory for ``--workers``/``--reload``: the app named by ZEPHYR_APP."""
    path = os.environ.get("ZEPHYR_APP") or get_settings().ZEPHYR_APP
    if not path:
        raise ConfigError("ZEPHYR_APP is not set: pass --app module:attribute")
    return wrap(load_app(path))
