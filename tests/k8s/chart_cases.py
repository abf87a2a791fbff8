"""Values the chart is rendered with in the tests: the defaults and a matrix of features."""

from __future__ import annotations

from typing import Any

RELEASE = "shop"
NAMESPACE = "prod"
KUBE_VERSIONS = ("1.31.0", "1.34.0", "1.36.0")

BASE: dict[str, Any] = {"image": {"repository": "ghcr.io/acme/shop"}}
JOBS: dict[str, Any] = {"app": "shop.main:app", "jobs": "shop.jobs", "existingSecret": "shop-env"}
#: Three Sentinels, as redis.url takes them (no password, no database: the chart adds those).
SENTINELS = "sentinel://s1.prod.svc:26379;sentinel://s2.prod.svc:26379;sentinel://s3.prod.svc:26379"

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "only-repository": BASE,
    "ingress": {
        **BASE,
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"},
            "hosts": [{"host": "api.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "api-tls", "hosts": ["api.example.com"]}],
        },
    },
    "hpa": {
        **BASE,
        **JOBS,
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 20},
        "worker": {"autoscaling": {"enabled": True, "type": "hpa", "minReplicas": 1}},
    },
    "keda": {
        **BASE,
        **JOBS,
        "redis": {"url": "redis://redis.prod.svc:6379"},
        "worker": {
            "queues": ["celery", "mail"],
            "autoscaling": {
                "enabled": True,
                "type": "keda",
                "minReplicas": 0,
                "passwordKey": "REDIS_PASSWORD",
            },
        },
    },
    "flower": {**BASE, **JOBS, "flower": {"enabled": True}},
    "flower-ingress": {
        **BASE,
        **JOBS,
        "flower": {
            "enabled": True,
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "flower.example.com",
                "tls": [{"secretName": "flower-tls", "hosts": ["flower.example.com"]}],
            },
        },
    },
    "flower-own-secret": {
        **BASE,
        "jobs": "shop.jobs",
        "flower": {"enabled": True, "basicAuth": {"existingSecret": "flower-login", "key": "auth"}},
    },
    "existing-secret": {**BASE, **JOBS},
    "built-in-redis": {**BASE, "jobs": "shop.jobs", "redis": {"enabled": True}},
    "keda-on-built-in-redis": {
        **BASE,
        "jobs": "shop.jobs",
        "worker": {"autoscaling": {"enabled": True, "type": "keda"}},
    },
    "redis-off-with-secret": {**BASE, **JOBS, "redis": {"enabled": False}},
    "redis-url": {**BASE, "jobs": "shop.jobs", "redis": {"url": "redis://redis.prod.svc:6379"}},
    "redis-sentinel": {
        **BASE,
        "jobs": "shop.jobs",
        "redis": {"url": SENTINELS, "sentinelMaster": "mymaster"},
    },
    "keda-sentinel": {
        **BASE,
        **JOBS,
        "redis": {"url": SENTINELS, "sentinelMaster": "mymaster"},
        "worker": {
            "queues": ["celery", "mail"],
            "autoscaling": {
                "enabled": True,
                "minReplicas": 0,
                "passwordKey": "REDIS_PASSWORD",
                "sentinelPasswordKey": "REDIS_SENTINEL_PASSWORD",
            },
        },
    },
    "no-network-policy": {**BASE, **JOBS, "networkPolicy": {"enabled": False}},
    "service-monitor": {
        **BASE,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    },
    "digest": {
        **BASE,
        "image": {"repository": "ghcr.io/acme/shop", "digest": "sha256:" + "ab" * 32},
    },
    "everything": {
        **BASE,
        **JOBS,
        "redis": {"enabled": True},
        "flower": {"enabled": True},
        "ingress": {"enabled": True, "className": "nginx"},
        "autoscaling": {"enabled": True},
        "worker": {"autoscaling": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "settings": {"CACHE_KEY_PREFIX": "shop", "JOB_WORKER_CONCURRENCY": 8},
    },
}

#: Bad values and the words Helm's (translated) error must hold.
BAD_VALUES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "replicas as a word": ({"replicaCount": "three"}, ("replicaCount", "string")),
    "zero min replicas": ({"autoscaling": {"minReplicas": 0}}, ("autoscaling.minReplicas", "0")),
    "min above max": (
        {"autoscaling": {"minReplicas": 9, "maxReplicas": 4}},
        ("autoscaling.minReplicas (9)", "autoscaling.maxReplicas (4)"),
    ),
    "negative memory": (
        {"resources": {"limits": {"memory": "-1Gi"}}},
        ("resources.limits.memory", "-1Gi"),
    ),
    "unknown key": ({"replicas": 3}, ("replicas", "not allowed")),
    "latest tag": ({"image": {"tag": "latest"}}, ("image.tag", "latest")),
    "bad digest": ({"image": {"digest": "md5:abc"}}, ("image.digest", "md5:abc")),
    "password in redis.url": ({"redis": {"url": "redis://:pw@host:6379"}}, ("redis.url",)),
    "flower without login": (
        {"jobs": "shop.jobs", "flower": {"enabled": True}},
        ("flower.enabled", "login"),
    ),
    "worker min above max": (
        {"jobs": "shop.jobs", "worker": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        ("worker.autoscaling.minReplicas (5)",),
    ),
    "keda without redis address": (
        {"jobs": "shop.jobs", "existingSecret": "s", "worker": {"autoscaling": {"enabled": True}}},
        ("keda", "redis.url"),
    ),
    "redis.enabled as a word": (
        {"redis": {"enabled": "yes"}},
        ("redis.enabled", "true, false, 'auto'"),
    ),
    "redis off and none configured": (
        {"redis": {"enabled": False}},
        ("redis.enabled is false", "existingSecret", "redis.url", "auto"),
    ),
    "built-in redis and redis.url": (
        {"redis": {"enabled": True, "url": "redis://redis.prod.svc:6379"}},
        ("redis.enabled is true", "redis.url"),
    ),
    "flower ingress without host": (
        {
            "jobs": "shop.jobs",
            "existingSecret": "s",
            "flower": {"enabled": True, "ingress": {"enabled": True}},
        },
        ("flower.ingress.host",),
    ),
    "short grace period": (
        {"worker": {"terminationGracePeriodSeconds": 5}},
        ("terminationGracePeriodSeconds",),
    ),
}
