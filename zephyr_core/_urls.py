"""URL helpers: masking secrets for display and validating Redis/AMQP URLs."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    >>> mask_url("redis://user:secret@host:6379/0")
    'redis://user:***@host:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literals keep their brackets
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if _has_port(parts) else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _has_port(parts: SplitResult) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return False


def redis_url_problem(url: str) -> str | None:
    """Say what is wrong with a Redis URL, or return ``None`` when it is usable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"it cannot be parsed ({exc})"
    if parts.scheme not in REDIS_SCHEMES:
        return f"the scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs a socket path"
    if not parts.hostname:
        return "it has no host (expected redis://host:6379/0)"
    if port is not None and not 0 < port < 65536:
        return "the port must be between 1 and 65535"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return f"the database must be a number, got {db!r}"
    return None


def amqp_url_problem(url: str) -> str | None:
    """Say what is wrong with an AMQP URL, or return ``None`` when it is usable."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - property raises on a bad port
    except ValueError as exc:
        return f"it cannot be parsed ({exc})"
    if parts.scheme not in AMQP_SCHEMES:
        return f"the scheme must be one of {', '.join(s + '://' for s in AMQP_SCHEMES)}"
    if not parts.hostname:
        return "it has no host (expected amqp://user:password@host:5672//)"
    return None


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (localhost, 127.0.0.1 or ::1)."""
    try:
        return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
    except ValueError:
        return False


def host_port(url: str, default_port: int = 6379) -> tuple[str, int]:
    """The ``(host, port)`` a network URL points at."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or default_port
