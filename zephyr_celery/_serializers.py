"""Which wire formats an app may use: data formats only, never one that runs code.

Celery reads ``accept_content`` and ``result_accept_content`` as serializer names or
content types, and kombu's registry maps one to the other: ``"pickle"`` and
``"application/x-python-serialize"`` are the same decoder, which runs whatever code
the message carries. Looking for the word "pickle" missed the second spelling, so
the check is an allowlist of decoders that build plain data:

- ``json`` (``application/json``), the default;
- ``msgpack`` (``application/x-msgpack``);
- ``yaml`` (``application/x-yaml``): kombu decodes it with ``yaml.safe_load``.

Also allowed on purpose: Celery's ``auth`` serializer (message signing, content type
``application/data``), because a worker then runs only messages signed by a key it
trusts. It exists once ``app.setup_security()`` has registered it (which also
disables pickle in kombu's registry); see the README, "Signed messages".

Anything else (pickle by any name, a custom or unknown serializer) is a
``ConfigError`` naming the setting and the value, for the settings below.

Private internals used: none (kombu's ``registry.name_to_type`` is public).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import bootsteps
from kombu.serialization import registry

from zephyr_core import ConfigError

#: Settings that name serializers or content types.
SERIALIZER_SETTINGS = (
    "accept_content",
    "result_accept_content",
    "task_serializer",
    "result_serializer",
    "event_serializer",
)

#: Content types whose decoders build plain data.
SAFE_CONTENT_TYPES = frozenset({"application/json", "application/x-msgpack", "application/x-yaml"})

#: Celery's signed-message serializer, by name and by content type.
SIGNED = frozenset({"auth", "application/data"})

_ACCEPTED = "json, msgpack, yaml (safe_load), or auth (signed messages, see README)"


def content_type(kind: str) -> str:
    """The content type kombu's registry maps a serializer name to (a type stays one)."""
    return str(registry.name_to_type.get(kind, kind))


def is_safe(kind: Any) -> bool:
    """Whether a serializer name or content type decodes to plain data (or is signed)."""
    if not isinstance(kind, str):
        return False
    kind = kind.strip().lower()
    return kind in SIGNED or content_type(kind) in SAFE_CONTENT_TYPES


def check_serializers(config: Mapping[str, Any]) -> None:
    """Refuse any serializer setting of ``config`` that is not a data format.

    Raises:
        ConfigError: A setting names pickle (under any alias) or a serializer
            outside the allowlist; the message names the setting and the value.
    """
    for key in SERIALIZER_SETTINGS:
        value = config.get(key)
        if value is None:
            continue
        kinds = [value] if isinstance(value, str) else list(value)
        unsafe = [kind for kind in kinds if not is_safe(kind)]
        if not unsafe:
            continue
        runs_code = any(
            isinstance(kind, str) and content_type(kind.strip().lower()) == _PICKLE
            for kind in unsafe
        )
        why = (
            "pickle from a broker or backend runs arbitrary code"
            if runs_code
            else "not a known data-only serializer"
        )
        raise ConfigError(f"{key}={value!r}: {why}; accepted: {_ACCEPTED}", field=key)


_PICKLE = "application/x-python-serialize"


class SerializerGuard(bootsteps.Step):  # type: ignore[misc]
    """A worker bootstep: a setting changed after ``create_app`` is refused at start.

    (``app.conf.accept_content = [...]`` skips create_app's check.) A bootstep, not
    the ``worker_init`` signal: Celery logs and swallows a signal receiver's error,
    while an error raised here stops the worker before it consumes anything.
    """

    name = "zephyr serializer guard"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        check_serializers({key: parent.app.conf.get(key) for key in SERIALIZER_SETTINGS})
        super().__init__(parent, **kwargs)
