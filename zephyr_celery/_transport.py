"""Broker settings for the Celery app (placeholder; the reliable Redis transport lands here)."""

from __future__ import annotations

from typing import Any

from zephyr_core import Settings


def broker_settings(settings: Settings) -> dict[str, Any]:
    """Celery configuration for the broker named by ``settings``."""
    return {
        "broker_url": settings.JOB_QUEUE_URL,
        "broker_transport_options": {"visibility_timeout": settings.JOB_VISIBILITY_TIMEOUT},
    }
