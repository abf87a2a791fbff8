"""``zephyr k8s logs``: the logs of a component's pods, each line prefixed with its pod."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from zephyr_core import ConfigError
from zephyr_deploy._k8s.cluster import Cluster, resource_path

_SINCE = re.compile(r"^(\d+)(s|m|h)$")


def since_seconds(text: str) -> int:
    """``--since`` as seconds: ``30s``, ``10m``, ``2h``.

    Raises:
        ConfigError: another form (the message shows the accepted ones).
    """
    match = _SINCE.match(text)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"--since {text!r}: expected a duration like 30s, 10m or 2h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def pods_of(cluster: Cluster, namespace: str, release: str, component: str) -> list[str]:
    """The names of ``component``'s pods in ``release``, sorted."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
    pods = cluster.request(
        "GET", resource_path("Pod", namespace), query=[("labelSelector", selector)]
    )["items"]
    return sorted(p["metadata"]["name"] for p in pods)


def log_lines(
    cluster: Cluster,
    namespace: str,
    pod: str,
    *,
    container: str,
    follow: bool,
    since: int | None,
    tail: int | None,
) -> Iterator[str]:
    """The pod's log, line by line (until the stream ends, with ``follow``)."""
    query = [("container", container)]
    if follow:
        query.append(("follow", "true"))
    if since is not None:
        query.append(("sinceSeconds", str(since)))
    if tail is not None:
        query.append(("tailLines", str(tail)))
    response = cluster.request(
        "GET", f"{resource_path('Pod', namespace, pod)}/log", query=query, stream=True,
        timeout=None if follow else 60.0,
    )  # fmt: skip
    try:
        pending = b""
        for chunk in response.stream(4096, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")
    finally:
        response.release_conn()


def print_logs(
    cluster: Cluster,
    namespace: str,
    pods: list[str],
    *,
    container: str,
    follow: bool,
    since: int | None,
    tail: int | None,
    echo: Callable[[str], None],
) -> None:
    """Print each pod's lines prefixed ``[pod]``; with ``follow``, all pods at once."""
    if not follow or len(pods) == 1:
        for pod in pods:
            for line in log_lines(
                cluster, namespace, pod, container=container, follow=follow, since=since, tail=tail
            ):
                echo(f"[{pod}] {line}")
        return
    import queue
    import threading

    lines: queue.Queue[str | None] = queue.Queue()

    def pump(pod: str) -> None:
        try:
            for line in log_lines(
                cluster, namespace, pod, container=container, follow=True, since=since, tail=tail
            ):
                lines.put(f"[{pod}] {line}")
        finally:
            lines.put(None)

    for pod in pods:
        threading.Thread(target=pump, args=(pod,), daemon=True).start()
    open_streams = len(pods)
    while open_streams:
        item = lines.get()
        if item is None:
            open_streams -= 1
        else:
            echo(item)
