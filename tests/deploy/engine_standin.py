"""A STAND-IN for the Docker Engine API: a small local HTTP server, not a Docker engine.

No Docker engine runs on these machines, so ``zephyr docker build|run|push`` are tested
against this: it speaks the handful of Engine API endpoints the ``docker`` SDK calls for
them (``/version``, ``/_ping``, ``/build``, ``/containers/create``, ``/containers/{id}/start``,
``/containers/{id}/json``, ``/containers/{id}/logs``, ``/images/{name}/push``), answers
with the shapes documented in the Engine API reference (JSON-lines progress streams,
chunked), and records every request so tests can check what was sent: the build
context tarball, the tag, the container's options, the X-Registry-Auth header. It
builds nothing, runs nothing and pushes nothing; the health states it reports are
scripted by the test.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.45"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def context_names(self) -> list[str]:
        """The member names of a build request's context tarball."""
        with tarfile.open(fileobj=io.BytesIO(self.body)) as archive:
            return archive.getnames()


@dataclass
class Script:
    """What the stand-in answers; tests change it before the command runs."""

    build_error: str | None = None
    #: Health statuses reported by successive /containers/{id}/json calls; the last repeats.
    health: list[str] = field(default_factory=lambda: ["starting", "healthy"])
    container_status: str = "running"
    #: The credentials push accepts (the decoded X-Registry-Auth's username/password).
    registry_user: tuple[str, str] | None = None


class EngineStandIn:
    """The stand-in server on 127.0.0.1:<free port>; ``url`` goes into DOCKER_HOST."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script = Script()
        self._health_calls = 0
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> EngineStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def calls(self, method: str, contains: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and contains in r.path]

    # ---- the endpoints ----

    def answer(self, request: Recorded) -> tuple[int, Any, bool]:
        """(status, body, streamed as JSON lines)."""
        path = request.path
        if path.startswith(f"/v{API_VERSION}"):
            path = path[len(f"/v{API_VERSION}") :]
        if path == "/version":
            return 200, {"ApiVersion": API_VERSION, "Version": "stand-in"}, False
        if path == "/_ping":
            return 200, "OK", False
        if request.method == "POST" and path == "/build":
            tag = request.query.get("t", ["?"])[0]
            lines: list[dict[str, Any]] = [
                {"stream": "Step 1/12 : FROM python:3.11-slim AS builder\n"},
                {"stream": " ---> 0123456789ab\n"},
            ]
            if self.script.build_error:
                lines.append({
                    "errorDetail": {"message": self.script.build_error},
                    "error": self.script.build_error,
                })  # fmt: skip
            else:
                lines += [
                    {"aux": {"ID": "sha256:" + "ab" * 32}},
                    {"stream": f"Successfully tagged {tag}\n"},
                ]
            return 200, lines, True
        if request.method == "POST" and path == "/containers/create":
            return 201, {"Id": "c0ffee" * 10 + "beef", "Warnings": []}, False
        if request.method == "POST" and path.endswith("/start"):
            return 204, None, False
        if request.method == "GET" and path.endswith("/json") and "/containers/" in path:
            with self._lock:
                index = min(self._health_calls, len(self.script.health) - 1)
                self._health_calls += 1
            health = self.script.health[index]
            state: dict[str, Any] = {"Status": self.script.container_status, "ExitCode": 0}
            if health != "none":
                state["Health"] = {"Status": health, "Log": [{"Output": "probe said no"}]}
            return (
                200,
                {"Id": "c0ffee" * 10 + "beef", "State": state, "Config": {"Tty": False}},
                False,
            )
        if request.method == "GET" and path.endswith("/logs"):
            return 200, b"", False
        if request.method == "POST" and path.startswith("/images/") and path.endswith("/push"):
            return 200, self._push(request), True
        return 404, {"message": f"stand-in: no such endpoint {request.method} {path}"}, False

    def _push(self, request: Recorded) -> list[dict[str, Any]]:
        from zephyr_deploy._engine import decode_auth_header

        header = request.headers.get("x-registry-auth")
        auth = decode_auth_header(header) if header else {}
        expected = self.script.registry_user
        if expected and (auth.get("username"), auth.get("password")) != expected:
            message = "unauthorized: authentication required"
            return [{"errorDetail": {"message": message}, "error": message}]
        return [
            {"status": "The push refers to repository [registry.local:5000/shop]"},
            {"status": "Preparing", "progressDetail": {}, "id": "5f70bf18a086"},
            {"status": "Pushing", "progressDetail": {"current": 512, "total": 1024},
             "id": "5f70bf18a086"},
            {"status": "Pushed", "progressDetail": {}, "id": "5f70bf18a086"},
            {"status": "1.0: digest: sha256:" + "cd" * 32 + " size: 528"},
        ]  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                split = urlsplit(self.path)
                request = Recorded(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self._read_body(),
                )
                standin.requests.append(request)
                status, body, streamed = standin.answer(request)
                self.send_response(status)
                if streamed:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for line in body:
                        data = json.dumps(line).encode() + b"\r\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if body is None:
                    payload = b""
                elif isinstance(body, bytes):
                    payload = body
                elif isinstance(body, str):
                    payload = body.encode()
                else:
                    payload = json.dumps(body).encode()
                kind = "text/plain" if isinstance(body, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
