"""A STAND-IN for a Kubernetes API server: no real one can run on these machines.

It speaks only the few endpoints ``zephyr k8s`` uses, over real HTTP on a free port,
and records every request so tests can check what was sent:

- ``PATCH <collection>/<name>`` with ``application/apply-patch+yaml`` (server-side
  apply): refuses another content type (415) or a missing ``fieldManager`` (422), as
  the real server does; stores the object unless ``dryRun=All``; bumps
  ``metadata.generation``;
- ``GET <collection>[/<name>]`` (``labelSelector`` with ``k=v`` terms);
- ``PATCH .../deployments/<name>/scale`` with ``application/merge-patch+json``;
- ``GET .../pods/<name>/log`` (``follow`` streams the pod's lines, chunked);
- ``GET .../events`` (the warning events a test puts in ``events``).

A Deployment's ``status`` reports its rollout done after ``rollout_gets`` GETs of it,
so the rollout wait has something to wait for. Nothing else of Kubernetes is here:
no admission, no controllers, no validation beyond the checks above.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: bytes
    authorization: str | None


@dataclass
class StandInApiServer:
    """Serve in a thread: ``with StandInApiServer() as server: ...``."""

    rollout_gets: int = 2
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> pod
    pod_logs: dict[str, list[str]] = field(default_factory=dict)  # pod name -> lines
    fail_apply_of: str | None = None  # a name whose apply is refused (422)
    gets: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> StandInApiServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self, "GET")

            def do_PATCH(self) -> None:
                server.handle(self, "PATCH")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, folder: Path, context: str = "standin") -> Path:
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "c", "cluster": {"server": self.url}}],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "standin-token"}}],
        }))  # fmt: skip
        return path

    def applies(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PATCH" and not r.path.endswith("/scale")]

    # ---- the endpoints ----

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        record = Recorded(
            method, parts.path, parse_qs(parts.query), request.headers.get("Content-Type"),
            body, request.headers.get("Authorization"),
        )  # fmt: skip
        self.requests.append(record)
        if parts.path.endswith("/log"):
            return self.log(request, record)
        status, answer = self.patch(record) if method == "PATCH" else self.get(record)
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def patch(self, record: Recorded) -> tuple[int, dict[str, Any]]:
        if record.path.endswith("/scale"):
            if record.content_type != "application/merge-patch+json":
                return 415, status_body(415, f"unsupported media type {record.content_type}")
            path = record.path.removesuffix("/scale")
            if path not in self.objects:
                return 404, status_body(404, f"deployments {path.rsplit('/', 1)[1]} not found")
            replicas = json.loads(record.body)["spec"]["replicas"]
            self.objects[path]["spec"]["replicas"] = replicas
            return 200, {"kind": "Scale", "spec": {"replicas": replicas}}
        if record.content_type != "application/apply-patch+yaml":
            return 415, status_body(415, f"unsupported media type {record.content_type}")
        if "fieldManager" not in record.query:
            return 422, status_body(422, "fieldManager is required for apply requests")
        obj = yaml.safe_load(record.body)
        if obj["metadata"]["name"] == self.fail_apply_of:
            return 422, status_body(422, f"admission webhook denied {obj['kind']}")
        if record.query.get("dryRun") == ["All"]:
            return 200, obj
        previous = self.objects.get(record.path)
        generation = (previous or {}).get("metadata", {}).get("generation", 0)
        if previous is None or _spec(previous) != _spec(obj):
            generation += 1
            self.gets[record.path] = 0
        obj["metadata"]["generation"] = generation
        self.objects[record.path] = obj
        return (200 if previous else 201), obj

    def get(self, record: Recorded) -> tuple[int, dict[str, Any]]:
        path = record.path
        if path in self.objects:
            obj = self.objects[path]
            if obj["kind"] in ("Deployment", "StatefulSet"):
                self.gets[path] = self.gets.get(path, 0) + 1
                ready = self.gets[path] >= self.rollout_gets
                replicas = obj["spec"].get("replicas", 1) if ready else 0
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"] if ready else 0,
                    "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
                }  # fmt: skip
            return 200, obj
        if path.endswith("/events"):
            wanted = record.query.get("fieldSelector", [""])[0]
            items = [e for e in self.events if wanted != "type=Warning" or e["type"] == "Warning"]
            return 200, {"kind": "EventList", "items": items}
        if path.endswith("/pods"):
            return 200, {"kind": "PodList", "items": self.select(self.pods.values(), record)}
        prefix = path + "/"
        items = [
            o
            for p, o in self.objects.items()
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        ]
        if not items and "keda.sh" in path and not any("keda.sh" in p for p in self.objects):
            return 404, status_body(404, "the server could not find the requested resource")
        return 200, {"kind": "List", "items": self.select(items, record)}

    def select(self, items: Any, record: Recorded) -> list[dict[str, Any]]:
        selector = record.query.get("labelSelector", [""])[0]
        terms = [term.split("=", 1) for term in selector.split(",") if term]
        return [
            item for item in items
            if all(item["metadata"].get("labels", {}).get(k) == v for k, v in terms)
        ]  # fmt: skip

    def log(self, request: BaseHTTPRequestHandler, record: Recorded) -> None:
        pod = record.path.split("/")[-2]
        lines = self.pod_logs.get(pod, [])
        request.send_response(200)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        for line in lines:
            chunk = (line + "\n").encode()
            request.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            request.wfile.flush()
        request.wfile.write(b"0\r\n\r\n")


def _spec(obj: dict[str, Any]) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def status_body(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }
