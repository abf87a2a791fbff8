"""A warning for environment variables that look like settings but are none (typos).

``JOB_WORKER_CONCURENCY=8`` used to be ignored in silence, leaving the default in
force. Any variable with one of our prefixes that no field (nor another reader, such
as Flower) knows is reported once per process, naming the nearest field.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger("zephyr_core.settings")

#: Prefixes whose variables we read: an unknown name under one is probably a typo.
PREFIXES = ("JOB_", "CACHE_", "K8S_", "DATABASE_", "FLOWER_", "REDIS_SENTINEL_")

#: Variables with those prefixes read by something other than Settings. Flower reads
#: FLOWER_ + the upper-cased name of any of its options.
_FLOWER_OPTIONS = (
    "ADDRESS",
    "UNIX_SOCKET",
    "DEBUG",
    "INSPECT_TIMEOUT",
    "AUTH",
    "BASIC_AUTH",
    "OAUTH2_KEY",
    "OAUTH2_SECRET",
    "OAUTH2_REDIRECT_URI",
    "MAX_WORKERS",
    "MAX_TASKS",
    "DB",
    "PERSISTENT",
    "STATE_SAVE_INTERVAL",
    "BROKER_API",
    "CA_CERTS",
    "CERTFILE",
    "KEYFILE",
    "XHEADERS",
    "AUTO_REFRESH",
    "PURGE_OFFLINE_WORKERS",
    "COOKIE_SECRET",
    "CONF",
    "ENABLE_EVENTS",
    "FORMAT_TASK",
    "NATURAL_TIME",
    "TASKS_COLUMNS",
    "AUTH_PROVIDER",
    "URL_PREFIX",
    "TASK_RUNTIME_METRIC_BUCKETS",
    "READ_ONLY",
)
OTHER_READERS = frozenset({"FLOWER_PORT", *(f"FLOWER_{option}" for option in _FLOWER_OPTIONS)})

_warned: set[str] = set()

#: Names already warned about, passed on to child processes (``zephyr up``'s web,
#: worker, beat, Flower) so one command warns once, not once per process.
WARNED_ENV = "ZEPHYR_WARNED_SETTINGS"


def _dotenv_names(env_file: object) -> set[str]:
    if not isinstance(env_file, str | Path) or not Path(env_file).is_file():
        return set()
    from dotenv import dotenv_values  # python-dotenv: pydantic-settings reads .env with it

    return {name.upper() for name in dotenv_values(env_file)}


def unknown_variables(fields: Iterable[str], names: Iterable[str]) -> dict[str, str | None]:
    """Each name under :data:`PREFIXES` that is no field, with the nearest field (or None)."""
    known = set(fields)
    found: dict[str, str | None] = {}
    for name in sorted(set(names)):
        if name.startswith(PREFIXES) and name not in known and name not in OTHER_READERS:
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            found[name] = nearest[0] if nearest else None
    return found


def warn_unknown_variables(fields: Iterable[str], env_file: object) -> None:
    """Log a warning, once per name, for each unknown setting variable.

    Once per process, and once per process tree: the names warned about are listed
    in :data:`WARNED_ENV` for the children to skip.
    """
    names = {name.upper() for name in os.environ} | _dotenv_names(env_file)
    inherited = set(os.environ.get(WARNED_ENV, "").split(","))
    for name, nearest in unknown_variables(fields, names).items():
        if name in _warned or name in inherited:
            continue
        _warned.add(name)
        hint = f" (did you mean {nearest}?)" if nearest else ""
        logger.warning("unknown setting %s ignored%s", name, hint)
    if _warned:
        os.environ[WARNED_ENV] = ",".join(sorted(_warned | inherited - {""}))
