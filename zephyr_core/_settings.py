"""Settings: one pydantic-settings class read from the environment and ``.env``.

Field names, types and defaults are the proposal's "Infrastructure Settings", plus
the few the platform needs (ZEPHYR_APP, JOB_RESULT_URL, ...). Every validator names
the field, the value and what would be accepted; URL passwords never reach a repr.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zephyr_core._exceptions import ConfigError
from zephyr_core._quantities import cpu_cores, memory_bytes
from zephyr_core._topology import (
    MASTER_NAME_MISSING,
    RedisTopology,
    parse_redis_url,
    topology_problem,
)
from zephyr_core._unknown_env import warn_unknown_variables
from zephyr_core._urls import (
    SENTINEL_SCHEMES,
    amqp_url_problem,
    mask_url,
    postgres_url_problem,
    redis_url_problem,
)

JOB_QUEUE_BACKENDS = ("redis", "rabbitmq")
CACHE_BACKENDS = ("redis", "memory", "dummy")
LOAD_BALANCER_STRATEGIES = ("round_robin", "least_connections", "weighted", "p2c")

# Kubernetes resource quantities: CPU as cores ("0.5", "2") or millicores ("250m");
# memory with a binary (Ki..Ei) or decimal (k, M, G..E) suffix, or plain bytes.
_CPU = re.compile(r"^(\d+m|\d+(\.\d+)?)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_SERVICE_URL = re.compile(r"^https?://(\[[0-9a-fA-F:.]+\]|[^/\s:\[\]]+)(:\d+)?(/\S*)?$")
_APP_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_MASTER_NAME = re.compile(r"^[^\s;/?#&=]+$")

# Fields whose value may hold a password: shown masked everywhere.
_URL_FIELDS = (
    "JOB_QUEUE_URL",
    "JOB_RESULT_URL",
    "CACHE_URL",
    "DATABASE_URL",
    "DATABASE_READ_URLS",
)


class Settings(BaseSettings):
    """Every zephyr-infra setting, read from the environment and ``.env``.

    Instantiate directly (``Settings(K8S_REPLICAS=5)``) or use :func:`get_settings`
    for the process-wide instance. Invalid values raise :class:`ConfigError`.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    # The ASGI application, as "module:attribute" (like Celery's CELERY_APP).
    ZEPHYR_APP: str | None = None

    # Container configuration
    CONTAINER_REGISTRY: str | None = None
    CONTAINER_TAG: str = "latest"
    CONTAINER_HEALTH_CHECK: bool = True

    # Redis Sentinel: the master's name and the Sentinels' own password, for sentinel://
    # URLs that do not give them (?master_name=, ?sentinel_password=). Declared before
    # the URLs: their validators read them.
    REDIS_SENTINEL_MASTER: str | None = None
    REDIS_SENTINEL_PASSWORD: SecretStr | None = None

    # Job queue configuration
    JOB_QUEUE_BACKEND: str = "redis"
    JOB_QUEUE_URL: str = "redis://localhost:6379/0"
    JOB_RESULT_URL: str | None = None  # defaults to JOB_QUEUE_URL's Redis server
    JOB_WORKER_CONCURRENCY: int = Field(4, ge=1)
    JOB_RETRY_ATTEMPTS: int = Field(3, ge=0)
    JOB_RETRY_DELAY: int = Field(60, ge=0)
    JOB_VISIBILITY_TIMEOUT: int = Field(3600, ge=1)
    JOB_FAILURE_RETENTION: int = Field(7 * 24 * 3600, ge=1)  # seconds failed jobs are kept
    FLOWER_BASIC_AUTH: SecretStr | None = None  # "user:password"
    # Replicas that must acknowledge an enqueued job (Redis WAIT) before enqueue returns
    JOB_ENQUEUE_REPLICAS: int = Field(0, ge=0)
    JOB_ENQUEUE_REPLICAS_TIMEOUT: float = Field(1.0, gt=0)  # seconds WAIT may take

    # Caching configuration
    CACHE_BACKEND: str = "redis"
    CACHE_URL: str = "redis://localhost:6379/1"
    CACHE_DEFAULT_TIMEOUT: int = Field(300, ge=0)
    CACHE_KEY_PREFIX: str = "zephyr"

    # Load balancer configuration
    LOAD_BALANCER_STRATEGY: str = "round_robin"
    LOAD_BALANCER_HEALTH_CHECK: bool = True
    LOAD_BALANCER_HEALTH_INTERVAL: int = Field(30, ge=1)
    # {"name": ["http://a:8000", {"url": "http://b:8000", "weight": 3}]}, as JSON; an entry
    # with an "app" (module:attribute) on a loopback URL is started by `zephyr up`
    SERVICE_REGISTRY: dict[str, list[str | dict[str, Any]]] = {}

    # Database
    DATABASE_URL: str | None = None
    DATABASE_READ_URLS: Annotated[list[str], NoDecode] = []

    # Kubernetes configuration
    K8S_NAMESPACE: str = "default"
    K8S_REPLICAS: int = Field(3, ge=0)
    K8S_CPU_REQUEST: str = "250m"
    K8S_CPU_LIMIT: str = "500m"
    K8S_MEMORY_REQUEST: str = "256Mi"
    K8S_MEMORY_LIMIT: str = "512Mi"

    # Auto-scaling configuration
    AUTOSCALING_ENABLED: bool = False
    AUTOSCALING_MIN_REPLICAS: int = Field(2, ge=1)
    AUTOSCALING_MAX_REPLICAS: int = Field(10, ge=1)
    AUTOSCALING_CPU_TARGET: int = Field(70, ge=1, le=100)
    AUTOSCALING_MEMORY_TARGET: int = Field(80, ge=1, le=100)

    def __init__(self, **values: Any) -> None:
        warn_unknown_variables(set(type(self).model_fields), self.model_config.get("env_file"))
        try:
            super().__init__(_secrets_dir=secrets_dir(), **values)
        except ValidationError as exc:
            raise config_error_from(exc) from None

    @field_validator("ZEPHYR_APP")
    @classmethod
    def _app_path(cls, value: str | None) -> str | None:
        if value is not None and not _APP_PATH.match(value):
            raise ValueError("expected an import path like 'myapp.main:app'")
        return value

    @field_validator("JOB_QUEUE_BACKEND")
    @classmethod
    def _queue_backend(cls, value: str) -> str:
        return _one_of(value, JOB_QUEUE_BACKENDS)

    @field_validator("CACHE_BACKEND")
    @classmethod
    def _cache_backend(cls, value: str) -> str:
        return _one_of(value, CACHE_BACKENDS)

    @field_validator("LOAD_BALANCER_STRATEGY")
    @classmethod
    def _strategy(cls, value: str) -> str:
        return _one_of(value, LOAD_BALANCER_STRATEGIES)

    @field_validator("SERVICE_REGISTRY")
    @classmethod
    def _service_registry(
        cls, value: dict[str, list[str | dict[str, Any]]]
    ) -> dict[str, list[str | dict[str, Any]]]:
        for name, entries in value.items():
            if not entries:
                raise ValueError(f"service {name!r} has an empty endpoint list")
            for entry in entries:
                url = entry.get("url") if isinstance(entry, dict) else entry
                weight = entry.get("weight", 1) if isinstance(entry, dict) else 1
                if not isinstance(url, str) or not re.match(
                    r"^https?://[^/\s:]+(:\d+)?(/\S*)?$", url
                ):
                    raise ValueError(
                        f"service {name!r}: endpoint {url!r}: expected an http(s)://host[:port] URL"
                    )
                if isinstance(entry, dict) and (set(entry) - {"url", "weight", "app"}):
                    raise ValueError(
                        f"service {name!r}: entry {entry!r}: keys are url, weight and app"
                    )
                if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                    raise ValueError(
                        f"service {name!r}: weight={weight!r}: expected an integer >= 1"
                    )
        return value

    @field_validator("K8S_CPU_REQUEST", "K8S_CPU_LIMIT")
    @classmethod
    def _cpu(cls, value: str, info: ValidationInfo) -> str:
        if not _CPU.match(value):
            raise ValueError("expected a CPU quantity like '250m', '0.5' or '2'")
        if info.field_name == "K8S_CPU_LIMIT":
            _request_within_limit("K8S_CPU", info.data, value, cpu_cores)
        return value

    @field_validator("K8S_MEMORY_REQUEST", "K8S_MEMORY_LIMIT")
    @classmethod
    def _memory(cls, value: str, info: ValidationInfo) -> str:
        if not _MEMORY.match(value):
            raise ValueError("expected a memory quantity like '256Mi', '1Gi' or '512M'")
        if info.field_name == "K8S_MEMORY_LIMIT":
            _request_within_limit("K8S_MEMORY", info.data, value, memory_bytes)
        return value

    @field_validator("AUTOSCALING_MAX_REPLICAS")
    @classmethod
    def _replica_range(cls, value: int, info: ValidationInfo) -> int:
        # A field validator, not a model one: model validators run only once every
        # field is valid, so this problem would hide behind any other.
        low = info.data.get("AUTOSCALING_MIN_REPLICAS")
        if low is not None and low > value:
            reason = f"must not exceed AUTOSCALING_MAX_REPLICAS ({value})"
            raise _field_error("AUTOSCALING_MIN_REPLICAS", low, reason)
        return value

    @field_validator("REDIS_SENTINEL_MASTER")
    @classmethod
    def _sentinel_master(cls, value: str | None) -> str | None:
        if value is not None and not _MASTER_NAME.match(value):
            raise ValueError(
                "expected the master's name as the Sentinels know it (sentinel monitor "
                "<name> ...): no spaces, ';', '/', '?', '#', '&' or '='"
            )
        return value

    @field_validator("JOB_QUEUE_URL")
    @classmethod
    def _queue_url(cls, url: str, info: ValidationInfo) -> str:
        backend = info.data.get("JOB_QUEUE_BACKEND")  # validated first: declared first
        if backend == "redis" and (problem := redis_url_problem(url)):
            hint = " (set JOB_QUEUE_BACKEND=rabbitmq for amqp://)" if "amqp" in url else ""
            raise ValueError(f"not a Redis URL: {problem}{hint}")
        if backend == "redis":
            _check_master_name(url, info)
        if backend == "rabbitmq" and (problem := amqp_url_problem(url)):
            raise ValueError(f"not a RabbitMQ URL: {problem}")
        return url

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and (problem := postgres_url_problem(value)):
            raise ValueError(f"not a PostgreSQL URL: {problem}")
        return value

    @field_validator("DATABASE_READ_URLS")
    @classmethod
    def _read_urls(cls, urls: list[str]) -> list[str]:
        for number, url in enumerate(urls, 1):
            if problem := postgres_url_problem(url):
                where = f"URL {number} of {len(urls)}, {mask_url(url)!r}"
                raise ValueError(f"not a list of PostgreSQL URLs: {where}: {problem}")
        return urls

    @field_validator("CACHE_URL", "JOB_RESULT_URL")
    @classmethod
    def _redis_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        allow_cluster = info.field_name == "CACHE_URL"  # Celery needs one keyspace
        if problem := redis_url_problem(value, allow_cluster=allow_cluster):
            raise ValueError(f"not a Redis URL: {problem}")
        _check_master_name(value, info)
        return value

    @field_validator("DATABASE_READ_URLS", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(
                    "expected a JSON list of URLs or URLs separated by commas"
                ) from None
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("FLOWER_BASIC_AUTH")
    @classmethod
    def _basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        # Flower splits the value on commas into users and lets in any entry sent
        # whole: in 'admin:pw,word', 'word' alone would get in. Each entry must be a
        # pair; entries are counted, never shown (they hold passwords).
        entries = value.get_secret_value().split(",")
        for number, entry in enumerate(entries, 1):
            user, sep, password = entry.partition(":")
            if not (user and sep and password) or entry != entry.strip():
                where = f" (entry {number} of {len(entries)})" if len(entries) > 1 else ""
                raise ValueError(
                    f"expected 'user:password', or pairs separated by commas{where}; "
                    "a comma starts a new user, so a password cannot contain one"
                )
        if not value.get_secret_value().isascii():
            # Flower compares logins with hmac.compare_digest, which raises on non-ASCII
            # text: every request, the right login included, would get a 500.
            raise ValueError(
                "expected 'user:password' in ASCII characters (Flower compares no other)"
            )
        return value

    @model_validator(mode="after")
    def _result_url(self) -> Settings:
        if self.JOB_RESULT_URL is None:
            redis = self.JOB_QUEUE_BACKEND == "redis"
            self.JOB_RESULT_URL = self.JOB_QUEUE_URL if redis else self.CACHE_URL
            if topology_problem(self.JOB_RESULT_URL, allow_cluster=False):
                # Only a Cluster CACHE_URL gets here: it was valid as a cache URL.
                raise _field_error(
                    "JOB_RESULT_URL",
                    None,
                    "unset, so it would be CACHE_URL, a Redis Cluster URL the result "
                    "backend cannot use (it needs one keyspace); set JOB_RESULT_URL",
                )
        return self

    def redis_topology(self, url: str) -> RedisTopology:
        """What ``url`` points at, with REDIS_SENTINEL_MASTER / _PASSWORD applied."""
        password = self.REDIS_SENTINEL_PASSWORD
        return parse_redis_url(
            url,
            master_name=self.REDIS_SENTINEL_MASTER,
            sentinel_password=password.get_secret_value() if password else None,
        )

    @property
    def job_result_url(self) -> str:
        """The result backend URL (JOB_RESULT_URL, resolved)."""
        assert self.JOB_RESULT_URL is not None  # set by the model validator
        return self.JOB_RESULT_URL

    def display(self) -> dict[str, Any]:
        """Every setting as plain data with every password masked, for printing."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif name in _URL_FIELDS and isinstance(value, str):
                value = mask_url(value)
            elif name == "DATABASE_READ_URLS":
                value = [mask_url(url) for url in value]
            shown[name] = value
        return shown

    def __repr_args__(self) -> Any:
        return list(self.display().items())


def redis_urls_by_setting(settings: Settings) -> dict[str, str]:
    """The settings that name a Redis server, by field name (as the processes use them)."""
    urls: dict[str, str] = {}
    if settings.JOB_QUEUE_BACKEND == "redis":
        urls["JOB_QUEUE_URL"] = settings.JOB_QUEUE_URL
    urls["JOB_RESULT_URL"] = settings.job_result_url
    if settings.CACHE_BACKEND == "redis":
        urls["CACHE_URL"] = settings.CACHE_URL
    return urls


#: A folder of files named after fields (``JOB_QUEUE_URL``, ...), each holding its value:
#: how Kubernetes mounts a Secret. Read below the environment and ``.env``.
SECRETS_DIR_VARIABLE = "ZEPHYR_SECRETS_DIR"


def secrets_dir() -> str | None:
    """ZEPHYR_SECRETS_DIR, checked to be a folder (unset or empty: no secret files).

    Secrets as files rather than environment variables: a child process or a crash
    report inherits the environment, not a mounted file.
    """
    folder = os.environ.get(SECRETS_DIR_VARIABLE)
    if not folder:
        return None
    if not os.path.isdir(folder):
        raise ConfigError(
            f"{SECRETS_DIR_VARIABLE}={folder!r}: not a folder; expected the folder a "
            "Secret is mounted in, one file per setting (JOB_QUEUE_URL, CACHE_URL, ...)",
            field=SECRETS_DIR_VARIABLE,
        )
    return folder


def _check_master_name(url: str, info: ValidationInfo) -> None:
    """A Sentinel URL needs a master name from its query or REDIS_SENTINEL_MASTER."""
    if url.partition("://")[0].lower() not in SENTINEL_SCHEMES:
        return
    if info.data.get("REDIS_SENTINEL_MASTER"):
        return
    try:
        parse_redis_url(url)
    except ValueError:
        raise ValueError(MASTER_NAME_MISSING) from None


def _request_within_limit(prefix: str, earlier: dict[str, Any], limit: str, amount: Any) -> None:
    request = earlier.get(f"{prefix}_REQUEST")  # absent when it was invalid itself
    if request is not None and amount(request) > amount(limit):
        raise _field_error(
            f"{prefix}_REQUEST", request, f"must not exceed {prefix}_LIMIT ({limit!r})"
        )


def _one_of(value: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ValueError(f"expected one of {', '.join(accepted)}")
    return value


class _FieldError(ValueError):
    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


def _field_error(field: str, value: Any, reason: str) -> _FieldError:
    return _FieldError(field, value, reason)


def _shown(field: str, value: Any) -> str:
    if field in _URL_FIELDS and isinstance(value, str):
        return repr(mask_url(value))
    if field in _URL_FIELDS and isinstance(value, list):
        return repr([mask_url(url) if isinstance(url, str) else url for url in value])
    if field in ("FLOWER_BASIC_AUTH", "REDIS_SENTINEL_PASSWORD"):
        return "'***'"
    return repr(value)


def config_error_from(exc: ValidationError) -> ConfigError:
    """Turn pydantic's report into one line per bad field."""
    lines: list[str] = []
    first: str | None = None
    for error in exc.errors():
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            field, value, reason = ctx_error.field, ctx_error.value, ctx_error.reason
        else:
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            value, reason = error.get("input"), error["msg"].removeprefix("Value error, ")
        first = first or field
        lines.append(f"{field}={_shown(field, value)}: {reason}")
    return ConfigError("invalid settings: " + "; ".join(lines), field=first, problems=lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide :class:`Settings`, read once from the environment and ``.env``.

    Call ``get_settings.cache_clear()`` after changing the environment.
    """
    return Settings()
