"""URL helpers: masking secrets for display and validating Redis, AMQP and PostgreSQL URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("sentinel", "sentinels")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
POSTGRES_SCHEMES = ("postgresql", "postgres")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    The userinfo is found without parsing the URL: it is everything between ``://``
    and the last ``@``, so a password holding ``#``, ``/``, ``?``, ``@`` or ``%`` (which
    ends the authority early for a URL parser) is masked whole. An ``@`` further on
    (in a query, say) masks too much, never too little. The text before ``://`` is
    kept, so an error message that ends with a URL can be masked too.

    A list of URLs joined by ``;`` (the Sentinel form) is masked part by part, and a
    ``password=`` or ``sentinel_password=`` query value is masked too.

    >>> mask_url("redis://user:secret@host:6379/0")
    'redis://user:***@host:6379/0'
    >>> mask_url("postgresql://app:p#ss/w@rd@db:5432/app")
    'postgresql://app:***@db:5432/app'
    >>> mask_url("sentinel://:pw@h1:26379;sentinel://:pw@h2:26379/0?sentinel_password=s")
    'sentinel://:***@h1:26379;sentinel://:***@h2:26379/0?sentinel_password=***'
    """
    parts = _NEXT_URL_IN_LIST.split(url)
    masked = ";".join(_mask_userinfo(part) for part in parts)
    return _PASSWORD_QUERY.sub(r"\1***", masked)


# A ';' that starts another URL ("...;sentinel://..."): a ';' inside a password
# is not followed by a scheme, so it does not split that URL.
_NEXT_URL_IN_LIST = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_PASSWORD_QUERY = re.compile(r"([?&;](?:sentinel_)?password=)[^&\s]*")


def _mask_userinfo(url: str) -> str:
    head, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not (sep and at):
        return url
    user, colon, _password = userinfo.partition(":")
    if not colon:  # a user name alone: nothing secret
        return url
    return f"{head}{sep}{user}:***@{tail}"


def split_url_list(url: str) -> list[str]:
    """The URLs of a ``;``-joined list (one element for a plain URL)."""
    return _NEXT_URL_IN_LIST.split(url)


def parse_problem(url: str) -> str | None:
    """Why a URL parser misreads ``url`` (its messages may quote part of the password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - property raises on a bad port
    except ValueError as exc:
        # urllib's messages can quote part of the password ("... as 'p'"): say it ourselves.
        if "out of range" in str(exc):
            return "it cannot be parsed (Port out of range 0-65535)"
        reason = "the port is not a number" if "Port" in str(exc) else "it is malformed"
        return f"it cannot be parsed ({reason}){_ENCODE_HINT}"
    after_host = url.partition("://")[2][len(parts.netloc) :]
    if "@" in after_host and "@" not in parts.netloc:
        return f"'@' after the host{_ENCODE_HINT}"
    return None


_ENCODE_HINT = (
    "; a password holding '#', '/', '?' or '@' must be percent-encoded (%23, %2F, %3F, %40)"
)


def redis_url_problem(url: str, *, allow_cluster: bool = False) -> str | None:
    """Say what is wrong with a Redis URL, or return ``None`` when it is usable.

    Accepted: ``redis://``, ``rediss://``, ``unix://``, the Sentinel forms
    ``sentinel://`` and ``sentinels://`` (see :mod:`zephyr_core._topology`) and, with
    ``allow_cluster``, ``redis+cluster://`` and ``rediss+cluster://``. A Sentinel URL
    without a master name passes here: the REDIS_SENTINEL_MASTER setting may give it.
    """
    # Imported here: _topology imports this module (mask_url) at its top.
    from zephyr_core._topology import topology_problem

    return topology_problem(url, allow_cluster=allow_cluster)


def single_redis_url_problem(url: str) -> str | None:
    """What is wrong with a one-server URL (``redis://``, ``rediss://``, ``unix://``)."""
    if problem := parse_problem(url):
        return problem
    parts = urlsplit(url)
    port = parts.port
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
    if problem := parse_problem(url):
        return problem
    parts = urlsplit(url)
    if parts.scheme not in AMQP_SCHEMES:
        return f"the scheme must be one of {', '.join(s + '://' for s in AMQP_SCHEMES)}"
    if not parts.hostname:
        return "it has no host (expected amqp://user:password@host:5672//)"
    return None


def postgres_url_problem(url: str) -> str | None:
    """Say what is wrong with a PostgreSQL URL, or return ``None`` when it is usable.

    libpq's multi-host form (``postgresql://user@h1:5432,h2:5432/db``) is checked host
    by host.
    """
    head, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    netloc = tail.split("/", 1)[0].split("?", 1)[0]
    if sep and "," in netloc:
        after = tail[len(netloc) :]
        for entry in netloc.split(","):
            if problem := postgres_url_problem(f"{head}{sep}{userinfo}{at}{entry}{after}"):
                return problem
        return None
    if problem := parse_problem(url):
        return problem
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        return f"the scheme must be one of {', '.join(s + '://' for s in POSTGRES_SCHEMES)}"
    if not parts.hostname and "host=" not in parts.query:  # libpq also takes ?host=/socket
        return "it has no host (expected postgresql://user:password@host:5432/dbname)"
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
