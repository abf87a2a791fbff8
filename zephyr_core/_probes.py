"""Readiness probes for the processes ``zephyr up`` supervises."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

#: Seconds one probe request may take: a probe runs again a moment later anyway.
PROBE_TIMEOUT = 2.0

#: Where to reach a server that listens on every address.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local_url(host: str, port: int, path: str = "") -> str:
    """``http://host:port/path``, with a wildcard address replaced by loopback."""
    host = _WILDCARDS.get(host, host)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def http_probe(url: str, *, body: str | None = None) -> Callable[[], bool]:
    """A probe that passes when ``url`` answers 200 (and ``body``, when given)."""

    # No proxy: HTTP_PROXY in the environment must not route a loopback probe away.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def probe() -> bool:
        try:
            with opener.open(url, timeout=PROBE_TIMEOUT) as response:
                answered = response.read(4096).decode(errors="replace")
                return response.status == 200 and (body is None or answered.strip() == body)
        except (OSError, urllib.error.URLError, ValueError):
            return False

    return probe
