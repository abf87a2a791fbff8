"""A stand-in for the Kubernetes API server's EndpointSlice endpoints (no API server
can run on these machines). It answers the list and watch requests the ``kubernetes``
client makes for ``/apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices``, from
slices a test sets, streams watch events a test pushes, and records each request."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def endpoint_slice(
    name: str, service: str, addresses: list[str], port: int, ready: bool = True
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [address], "conditions": {"ready": ready}} for address in addresses
        ],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


class K8sApiStandIn:
    """The stand-in server on 127.0.0.1 (``url``)."""

    def __init__(self) -> None:
        self.slices: dict[str, dict[str, Any]] = {}
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.version = 100
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                standin.requests.append((parts.path, query))
                if not parts.path.endswith("/endpointslices"):
                    self.send_error(404)
                    return
                if query.get("watch", ["false"])[0] in ("true", "1", "True"):
                    self._watch()
                    return
                body = json.dumps(
                    {
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSliceList",
                        "metadata": {"resourceVersion": str(standin.version)},
                        "items": list(standin.slices.values()),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _watch(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    try:
                        event = standin.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if event is None:
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    line = json.dumps(event).encode() + b"\n"
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    except OSError:
                        return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def push(self, kind: str, item: dict[str, Any]) -> None:
        """Change a slice and stream the event to the open watch."""
        self.version += 1
        item = {**item, "metadata": {**item["metadata"], "resourceVersion": str(self.version)}}
        if kind == "DELETED":
            self.slices.pop(item["metadata"]["name"], None)
        else:
            self.slices[item["metadata"]["name"]] = item
        self.events.put({"type": kind, "object": item})

    def close(self) -> None:
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()
