"""A tiny real HTTP backend for the balancer tests, run by uvicorn in its own process.

``python -m tests.resilience.backend PORT [DELAY_MS]`` (or ``zephyr serve --app
tests.resilience.backend:app``, where it reports port 0). Routes: ``/health`` (200, or
503 after ``POST /sick``), ``/who`` (this backend's port), ``/status/<code>``,
``/echo`` (the method, path, query, Host header and body), anything else 200.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn

STATE: dict[str, Any] = {"sick": False, "port": 0, "delay": 0.0}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    status, payload = 200, {"port": STATE["port"]}
    if path == "/health":
        status = 503 if STATE["sick"] else 200
    elif path == "/sick":
        STATE["sick"] = True
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
    elif path.endswith("/echo"):
        headers = dict(scope["headers"])
        payload = {
            "port": STATE["port"],
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "host": headers.get(b"host", b"").decode(),
            "body": body.decode(),
        }
    if STATE["delay"] and path != "/health":
        await asyncio.sleep(STATE["delay"])
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    STATE["port"] = int(sys.argv[1])
    STATE["delay"] = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    uvicorn.run(app, host="127.0.0.1", port=STATE["port"], log_level="warning", access_log=False)
