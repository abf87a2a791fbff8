"""Settings -> the chart's values: what ``zephyr k8s generate`` and ``apply`` render with.

There is no second set of Kubernetes templates: these are plain values for the
shipped chart. The processes (web, worker, beat, Flower: commands, ports, grace
periods) come from :func:`zephyr_deploy._processes.container_processes`, the list
``zephyr up`` and ``zephyr docker compose`` use, so the three never disagree.

A JOB_QUEUE_URL on Redis Sentinel gives the chart what is not secret about it: the
master's name (``redis.sentinelMaster``, the pods' REDIS_SENTINEL_MASTER) and the
Sentinels' addresses for KEDA (``worker.autoscaling.redisUrl``); its passwords stay in
existingSecret, where the pods read the URL itself.
"""

from __future__ import annotations

import copy
from typing import Any

from zephyr_core import ConfigError, Settings, mask_url
from zephyr_core._topology import RedisTopology, parse_redis_url
from zephyr_deploy._processes import container_processes

#: Chart value paths that come from a setting: a refusal by the chart's schema names both.
SETTING_OF = {
    "replicaCount": "K8S_REPLICAS",
    "resources.requests.cpu": "K8S_CPU_REQUEST",
    "resources.limits.cpu": "K8S_CPU_LIMIT",
    "resources.requests.memory": "K8S_MEMORY_REQUEST",
    "resources.limits.memory": "K8S_MEMORY_LIMIT",
    "autoscaling.minReplicas": "AUTOSCALING_MIN_REPLICAS",
    "autoscaling.maxReplicas": "AUTOSCALING_MAX_REPLICAS",
    "autoscaling.targetCPUUtilizationPercentage": "AUTOSCALING_CPU_TARGET",
    "autoscaling.targetMemoryUtilizationPercentage": "AUTOSCALING_MEMORY_TARGET",
    "image.repository": "CONTAINER_REGISTRY",
    "image.tag": "CONTAINER_TAG",
    "worker.concurrency": "JOB_WORKER_CONCURRENCY",
}


def image_values(settings: Settings, project: str) -> dict[str, str]:
    """``image.repository`` and ``image.tag`` from CONTAINER_REGISTRY and CONTAINER_TAG.

    Raises:
        ConfigError: CONTAINER_TAG is ``latest`` (the chart refuses it: a rollout must
            name what it runs) or either setting is not valid in an image reference.
    """
    from zephyr_deploy._image import image_reference

    if settings.CONTAINER_TAG == "latest":
        raise ConfigError(
            "CONTAINER_TAG='latest': the chart deploys a named release, never 'latest'; "
            "set CONTAINER_TAG to the tag you built and pushed (e.g. 1.4.2 or a commit id)",
            field="CONTAINER_TAG",
        )
    repository, _, tag = image_reference(settings, project).rpartition(":")
    return {"repository": repository, "tag": tag}


def chart_values(
    settings: Settings, *, app: str, jobs_module: str | None, project: str
) -> dict[str, Any]:
    """The chart's values for this project and ``settings`` (before ``--set``)."""
    processes = {p.name: p for p in container_processes(app, jobs_module)}
    web = processes["web"]
    values: dict[str, Any] = {
        "app": app,
        "jobs": jobs_module or "",
        "image": image_values(settings, project),
        "replicaCount": settings.K8S_REPLICAS,
        "command": list(web.command),
        "service": {"targetPort": web.port},
        "resources": {
            "requests": {"cpu": settings.K8S_CPU_REQUEST, "memory": settings.K8S_MEMORY_REQUEST},
            "limits": {"cpu": settings.K8S_CPU_LIMIT, "memory": settings.K8S_MEMORY_LIMIT},
        },
        "autoscaling": {
            "enabled": settings.AUTOSCALING_ENABLED,
            "minReplicas": settings.AUTOSCALING_MIN_REPLICAS,
            "maxReplicas": settings.AUTOSCALING_MAX_REPLICAS,
            "targetCPUUtilizationPercentage": settings.AUTOSCALING_CPU_TARGET,
            "targetMemoryUtilizationPercentage": settings.AUTOSCALING_MEMORY_TARGET,
        },
    }
    if jobs_module:
        worker, beat, flower = processes["worker"], processes["beat"], processes["flower"]
        values["worker"] = {
            "command": list(worker.command),
            "concurrency": settings.JOB_WORKER_CONCURRENCY,
            "terminationGracePeriodSeconds": worker.stop_grace,
        }
        values["beat"] = {"command": list(beat.command)}
        values["flower"] = {"command": list(flower.command), "port": flower.port}
    if external_redis_setting(settings):
        # Settings name a Redis of your own: the chart's built-in trial Redis
        # (redis.enabled auto) must not come up in its place.
        values["redis"] = {"enabled": False}
    sentinel = queue_sentinel(settings)
    if sentinel is not None:
        values.setdefault("redis", {})["sentinelMaster"] = sentinel.master_name
        if jobs_module:
            # KEDA reads the queue lengths through the Sentinels (its redis-sentinel
            # scaler), never through a URL with a password in it.
            values["worker"]["autoscaling"] = {
                "redisUrl": sentinels_only(sentinel),
                "databaseIndex": sentinel.db,
            }
    return values


def queue_sentinel(settings: Settings) -> RedisTopology | None:
    """JOB_QUEUE_URL's topology when it is Redis Sentinel off this machine, else None."""
    url = settings.JOB_QUEUE_URL
    if not url or _on_this_machine(url):
        return None
    topology = settings.redis_topology(url)
    return topology if topology.kind == "sentinel" else None


def sentinels_only(topology: RedisTopology) -> str:
    """A Sentinel topology as the chart takes it: the Sentinels, no password, db or query.

    ``sentinel://h1:26379;sentinel://h2:26379`` (``sentinels://`` over TLS).
    """
    scheme = "sentinels" if topology.tls else "sentinel"
    return ";".join(f"{scheme}://{_host_label(host)}:{port}" for host, port in topology.nodes)


def keda_password_warning(settings: Settings, values: dict[str, Any]) -> str | None:
    """Why KEDA would be refused by a Sentinel queue's Redis, or None.

    JOB_QUEUE_URL holds the Redis password, and the chart never copies a URL; KEDA reads
    the password only from a key of its own in existingSecret (passwordKey).
    """
    autoscaling = (values.get("worker") or {}).get("autoscaling") or {}
    sentinel = queue_sentinel(settings)
    keda = autoscaling.get("enabled") and autoscaling.get("type", "keda") == "keda"
    if not keda or sentinel is None or sentinel.password is None:
        return None
    if autoscaling.get("passwordKey"):
        return None
    return (
        "JOB_QUEUE_URL's Redis has a password and KEDA reads the queue lengths without one: "
        "add the password to existingSecret under a key of its own and --set "
        "worker.autoscaling.passwordKey=<that key>"
    )


def _host_label(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def with_sentinel_password_key(settings: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with KEDA told the Sentinels' password key, when Settings have one.

    The pods read REDIS_SENTINEL_PASSWORD from existingSecret (a key per setting), so
    KEDA's TriggerAuthentication reads the same key. Applied after ``--set``: nothing
    changes without existingSecret, or when ``--set`` named the key itself.
    """
    autoscaling = (values.get("worker") or {}).get("autoscaling") or {}
    if (
        settings.REDIS_SENTINEL_PASSWORD is None
        or not values.get("existingSecret")
        or "sentinelPasswordKey" in autoscaling
        or queue_sentinel(settings) is None
    ):
        return values
    return merged(
        values, {"worker": {"autoscaling": {"sentinelPasswordKey": "REDIS_SENTINEL_PASSWORD"}}}
    )


#: The settings naming a Redis; a non-local one is "a Redis of your own".
REDIS_SETTINGS = ("JOB_QUEUE_URL", "CACHE_URL", "JOB_RESULT_URL")


def _on_this_machine(url: str) -> bool:
    """True for a URL no pod can reach: a unix socket, or only localhost or loopback
    addresses (every Sentinel of a Sentinel URL, every seed node of a Cluster URL)."""
    try:
        topology = parse_redis_url(url, require_master_name=False)
    except ValueError:
        return False
    if topology.socket_path is not None:
        return True
    return bool(topology.nodes) and all(_loopback(host) for host, _ in topology.nodes)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def external_redis_setting(settings: Settings) -> str | None:
    """The first of :data:`REDIS_SETTINGS` that names a server off this machine, if any.

    The defaults (``redis://localhost:6379/...``) name none: a project that never set
    them gets the chart's built-in Redis, as a bare ``helm install`` does.
    """
    for name in REDIS_SETTINGS:
        url = getattr(settings, name)
        if url and not _on_this_machine(url):
            return name
    return None


def check_redis(settings: Settings, values: dict[str, Any]) -> None:
    """Refuse values that leave the pods no Redis while Settings name one of your own.

    The URL itself is not passed on: it may hold a password, which must never reach
    a ConfigMap. The pods get it from existingSecret (or redis.url, without one).

    Raises:
        ConfigError: a Settings URL names a non-local Redis, the built-in one is off
            (as :func:`chart_values` sets it), and neither existingSecret, redis.url
            nor ``settings.JOB_QUEUE_URL``/``CACHE_URL`` tells the pods where it is.
    """
    name = external_redis_setting(settings)
    redis = values.get("redis") or {}
    chart_settings = values.get("settings") or {}
    told = (
        values.get("existingSecret")
        or redis.get("url")
        or "JOB_QUEUE_URL" in chart_settings
        or "CACHE_URL" in chart_settings
    )
    if name is None or told or redis.get("enabled") is not False:
        return
    sentinel = queue_sentinel(settings)
    by_url = (
        f"'redis.url={sentinels_only(sentinel)}'" if sentinel else "redis.url=redis://host:port"
    )
    raise ConfigError(
        f"{name}={mask_url(getattr(settings, name))!r} is not on this machine, so the "
        "chart's built-in trial Redis stays off, and nothing tells the pods where yours is: "
        "--set existingSecret=<a Secret with "
        f"JOB_QUEUE_URL and CACHE_URL keys> (or --set {by_url} when it has no password)",
        field=name,
    )


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base`` key by key (as Helm coalesces ``--set``)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def name_settings(error: ConfigError) -> ConfigError:
    """The chart's refusal of a value that came from a setting, naming the setting too."""
    problems = getattr(error, "problems", None) or [str(error).removeprefix("chart values: ")]
    named = []
    for problem in problems:
        path = problem.split(":", 1)[0]
        setting = SETTING_OF.get(path)
        named.append(f"{problem} (from {setting})" if setting else problem)
    return ConfigError("chart values: " + "; ".join(named), field=error.field, problems=named)
