"""The root of zephyr-infra's exception tree.

Every package raises a subclass of :class:`ZephyrError`, so one ``except`` catches
anything the platform raises; errors from the engines underneath (Celery, redis,
aiocache, asyncpg, ...) are translated with ``raise ... from exc``.
"""

from __future__ import annotations


class ZephyrError(Exception):
    """Base class of every error zephyr-infra raises."""


class ConfigError(ZephyrError, ValueError):
    """A setting or a configuration value is invalid.

    The message names the field, the value (masked when it is a secret) and what
    would be accepted. It subclasses ``ValueError`` so code that validates input
    generically still catches it.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        #: One line per invalid field, for tools that list them separately.
        self.problems = problems or [message]
