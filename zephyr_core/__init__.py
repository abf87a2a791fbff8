"""zephyr-infra's core: settings, the ``zephyr`` CLI, serving with health checks."""

from zephyr_core._exceptions import ConfigError, ZephyrError
from zephyr_core._health import ReadinessCheck, register_check
from zephyr_core._settings import Settings, get_settings
from zephyr_core._urls import mask_url

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ReadinessCheck",
    "Settings",
    "ZephyrError",
    "__version__",
    "get_settings",
    "mask_url",
    "register_check",
]
