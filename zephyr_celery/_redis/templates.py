"""Job messages for a Redis broker, rendered from a template instead of built by Celery.

What Celery's ``send_task_message`` hands a Redis broker for one job is two
commands: ``LPUSH`` of kombu's envelope onto the queue's list (JSON: the protocol-v2
headers, the properties, the body as base64 of the JSON ``[args, kwargs, embed]``)
and ``PUBLISH`` of the ``task-sent`` event on the events fanout channel. For one job
name, queue and priority, all of it is the same from message to message except a
handful of fields: the job id, the body, ``argsrepr``/``kwargsrepr``, the reply-to
id, kombu's delivery tags, and the event's clock, timestamp and UTC offset.

So a :class:`Template` is cut, once per route, from the commands Celery itself
produces for a sample message (captured, never sent): the varying fields become
slots, the rest stays byte for byte as kombu wrote it. A message then costs one JSON
encoding of the arguments and a few string joins instead of Celery's and kombu's
layers. Before a template is used it renders three more samples, with arguments of
different shapes, and must match what Celery produces for them byte for byte
(delivery tags, clock and timestamp taken from Celery's output); a route whose
messages a setting changes in a way the template does not reproduce stays on
Celery's path.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from time import time
from typing import Any

from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from kombu.utils import json as kombu_json

from zephyr_celery._redis.wire import arg_bytes, pack

logger = logging.getLogger("zephyr_celery")

#: Captured broker commands: kombu's ``(name, args)`` pairs.
Commands = list[tuple[str, tuple[Any, ...]]]
#: Builds a message for (args, kwargs, job id) the way Celery does and returns the
#: commands kombu would send for it (nothing is sent).
Sampler = Callable[[list[Any], dict[str, Any], str], Commands]

# kombu's JSON encoder with json.dumps' defaults: what kombu.utils.json.dumps uses.
_encode = kombu_json.JSONEncoder().encode
# kombu's JSON text of envelopes and events (what the Redis transport sends).
_dumps: Callable[[Any], str] = kombu_json.dumps

# Arguments of the samples a template must reproduce before it is used: the cheap
# argsrepr path (flat scalars, quotes, non-ASCII) and Celery's saferepr (nesting).
_CHECKS: tuple[tuple[list[Any], dict[str, Any]], ...] = (
    ([], {}),
    (['it\'s "quoted"\n', 7, -2.5, None, True, "\u00e9\u6f22"], {"k": "v", "n": 0}),
    ([{"x": [1, {"y": [2, None]}]}, "a" * 40, 1.0], {"nested": {"z": [False]}, "e": []}),
)


class Template:
    """The commands of one route's messages, with slots for what varies."""

    __slots__ = (
        "_envelope",
        "_event_body",
        "_event_envelope",
        "_lpush",
        "_publish",
        "embed",
        "maxlen",
        "maxlevels",
        "replies",
    )

    def __init__(
        self,
        *,
        lpush: bytes,
        envelope: str,
        embed: Any,
        publish: tuple[bytes, ...],
        event_envelope: str | None,
        event_body: str | None,
        maxlen: int | None,
        maxlevels: int,
    ) -> None:
        self._lpush = lpush
        self._envelope = envelope
        self.embed = embed
        self._publish = publish
        self._event_envelope = event_envelope
        self._event_body = event_body
        self.maxlen = maxlen
        self.maxlevels = maxlevels
        #: Replies the rendered commands get.
        self.replies = 1 + len(publish)

    def render(
        self,
        job_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        reply_to: str,
        clock: Callable[[], int],
        *,
        tags: tuple[str, str] | None = None,
        event_time: tuple[int, float, Any] | None = None,
    ) -> bytes:
        """The packed commands of one message (raises what JSON encoding raises).

        ``tags`` (the message's and the event's delivery tags) and ``event_time``
        (clock, timestamp, UTC offset) are for comparing with a captured message;
        by default they are fresh, as Celery makes them.
        """
        args = list(args)
        kwargs = dict(kwargs)
        body = _encode([args, kwargs, self.embed])
        job = encode_basestring_ascii(job_id)
        # Celery reprs no arguments as its default, an empty tuple.
        argsrepr = encode_basestring_ascii(self.repr(args) if args else "()")
        kwargsrepr = encode_basestring_ascii(self.repr(kwargs))
        tag, event_tag = tags or (new_id(), "")
        envelope = self._envelope.format(
            body=_base64(body),
            id=job,
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
            reply_to=encode_basestring_ascii(reply_to),
            tag=encode_basestring_ascii(tag),
        ).encode()
        parts = [self._lpush, b"$%d\r\n" % len(envelope), envelope, b"\r\n"]
        if self._event_envelope is not None and self._event_body is not None:
            if event_time is None:
                event_time = (clock(), time(), utcoffset())
            count, timestamp, offset = event_time
            event_body = self._event_body.format(
                id=job,
                argsrepr=argsrepr,
                kwargsrepr=kwargsrepr,
                clock=_number(count),
                timestamp=_number(timestamp),
                utcoffset=_number(offset),
            )
            event = self._event_envelope.format(
                body=_base64(event_body), tag=encode_basestring_ascii(event_tag or new_id())
            ).encode()
            length = b"$%d\r\n" % len(event)
            for prefix in self._publish:
                parts += (prefix, length, event, b"\r\n")
        return b"".join(parts)

    def repr(self, value: list[Any] | dict[str, Any]) -> str:
        """Celery's ``saferepr`` of the args list or kwargs dict (as argsrepr/kwargsrepr)."""
        text = _flat_repr(value)
        if text is not None and (self.maxlen is None or len(text) < self.maxlen):
            return text
        safe: str = saferepr(value, self.maxlen, maxlevels=self.maxlevels)
        return safe


def _flat_repr(value: list[Any] | dict[str, Any]) -> str | None:
    """What ``saferepr`` writes for a flat list or dict of str/int/float/bool/None,
    as long as nothing is truncated; ``None`` for any other shape."""
    parts = []
    if isinstance(value, list):  # render passes exactly a list and a dict
        for item in value:
            text = _scalar_repr(item)
            if text is None:
                return None
            parts.append(text)
        return "[" + ", ".join(parts) + "]"
    for key, item in value.items():
        text = _scalar_repr(item)
        if type(key) is not str or text is None:
            return None
        parts.append("'" + key.replace("'", "\\'") + "': " + text)
    return "{" + ", ".join(parts) + "}"


def _scalar_repr(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        # saferepr quotes strings with ' and escapes only that quote (not repr()).
        return "'" + str.replace(value, "'", "\\'") + "'"
    if kind is int or kind is float or kind is bool:
        try:
            return str(value)  # saferepr writes numbers with str()
        except ValueError:  # an int too long to print: saferepr decides
            return None
    if value is None:
        return "None"
    return None


def _base64(text: str) -> str:
    # kombu's base64 body encoding, already as a JSON string (base64 needs no escaping).
    return '"' + base64.b64encode(text.encode()).decode("ascii") + '"'


def _number(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value)


# -- ids ------------------------------------------------------------------------------

_id_lock = threading.Lock()
_id_pool = bytearray()
_ID_POOL = 16 * 256


def new_id() -> str:
    """A random UUID4 string, as kombu's ``uuid()`` makes them, for a fraction of its cost.

    Random bytes are read 4 KiB at a time; a forked child drops what it inherited,
    so parent and child never hand out the same ids.
    """
    global _id_pool
    with _id_lock:
        if len(_id_pool) < 16:
            _id_pool = bytearray(os.urandom(_ID_POOL))
        raw = _id_pool[-16:]
        del _id_pool[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _drop_id_pool() -> None:
    global _id_pool
    _id_pool = bytearray()


os.register_at_fork(after_in_child=_drop_id_pool)


# -- making a template -----------------------------------------------------------------


def make_template(
    sample: Sampler, reply_to: str, maxlen: int | None, maxlevels: int
) -> Template | None:
    """Cut a template from Celery's own commands for a sample message, and check it.

    Returns:
        The template, or ``None`` when Celery's messages for this route are not of
        the shape a template reproduces (so they keep going through Celery).
    """
    # Celery's path is always right: anything unexpected here leaves the route on it.
    try:
        sample_id = new_id()
        template = _cut(sample([], {}, sample_id), sample_id, reply_to, maxlen, maxlevels)
        if template is None:
            logger.debug("job messages of this route are not templated: an unknown shape")
            return None
        for args, kwargs in _CHECKS:
            check_id = new_id()
            commands = sample(list(args), dict(kwargs), check_id)
            if not _same(template, commands, check_id, args, kwargs):
                logger.debug("job messages of this route are not templated: %r differs", args)
                return None
    except Exception:
        logger.debug("job messages of this route are not templated", exc_info=True)
        return None
    return template


def _cut(
    commands: Commands, job_id: str, reply_to: str, maxlen: int | None, maxlevels: int
) -> Template | None:
    if not commands or commands[0][0] != "lpush" or len(commands[0][1]) != 2:
        return None
    key, payload = commands[0][1]
    slots = _Slots()
    envelope = json.loads(payload)
    headers, properties = envelope["headers"], envelope["properties"]
    if not _is_json_base64(envelope) or properties["reply_to"] != reply_to:
        return None
    if not headers["id"] == headers["root_id"] == properties["correlation_id"] == job_id:
        return None
    body = json.loads(base64.b64decode(envelope["body"]))
    if not (isinstance(body, list) and len(body) == 3 and body[:2] == [[], {}]):
        return None
    argsrepr, kwargsrepr = headers["argsrepr"], headers["kwargsrepr"]
    envelope["body"] = slots.mark("body")
    properties["delivery_tag"] = slots.mark("tag")
    properties["reply_to"] = slots.mark("reply_to")
    headers["id"] = headers["root_id"] = properties["correlation_id"] = slots.mark("id")
    headers["argsrepr"] = slots.mark("argsrepr")
    headers["kwargsrepr"] = slots.mark("kwargsrepr")

    publish: list[bytes] = []
    event_envelope = event_body = None
    events = commands[1:]
    if events:
        payloads = {args[1] for name, args in events if name == "publish" and len(args) == 2}
        if len(payloads) != 1 or any(name != "publish" for name, _ in events):
            return None
        event = json.loads(payloads.pop())
        fields = json.loads(base64.b64decode(event["body"]))
        if not _is_json_base64(event) or not fields["uuid"] == fields["root_id"] == job_id:
            return None
        if (fields["args"], fields["kwargs"]) != (argsrepr, kwargsrepr):
            return None
        if not (type(fields["clock"]) is int and type(fields["timestamp"]) is float):
            return None
        fields["uuid"] = fields["root_id"] = slots.mark("id")
        fields["args"] = slots.mark("argsrepr")
        fields["kwargs"] = slots.mark("kwargsrepr")
        for name in ("clock", "timestamp", "utcoffset"):
            if name not in fields:
                return None
            fields[name] = slots.mark(name)
        event_body = slots.format(_dumps(fields))
        event["body"] = slots.mark("body")
        event["properties"]["delivery_tag"] = slots.mark("tag")
        event_envelope = slots.format(_dumps(event))
        publish = [_prefix("PUBLISH", topic) for _name, (topic, _payload) in events]

    return Template(
        lpush=_prefix("LPUSH", key),
        envelope=slots.format(_dumps(envelope)),
        embed=body[2],
        publish=tuple(publish),
        event_envelope=event_envelope,
        event_body=event_body,
        maxlen=maxlen,
        maxlevels=maxlevels,
    )


def _is_json_base64(envelope: dict[str, Any]) -> bool:
    return bool(
        envelope["content-type"] == "application/json"
        and envelope["content-encoding"] == "utf-8"
        and envelope["properties"]["body_encoding"] == "base64"
    )


def _prefix(command: str, key: Any) -> bytes:
    data = arg_bytes(key)
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(command), command.encode(), len(data), data)


class _Slots:
    """Markers standing for the varying fields while kombu's JSON text is made."""

    def __init__(self) -> None:
        self._prefix = f"zephyr-slot-{new_id()}-"
        self._names: set[str] = set()

    def mark(self, name: str) -> str:
        self._names.add(name)
        return self._prefix + name

    def format(self, text: str) -> str:
        """The JSON text as a ``str.format`` template: each marker becomes ``{name}``."""
        text = text.replace("{", "{{").replace("}", "}}")
        for name in self._names:
            text = text.replace(encode_basestring_ascii(self._prefix + name), "{" + name + "}")
        if self._prefix in text:
            raise ValueError("a marker is left in the template")
        return text


def _same(
    template: Template,
    commands: Commands,
    job_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
) -> bool:
    """Whether the template renders exactly Celery's commands for this sample."""
    try:
        envelope = json.loads(commands[0][1][1])
        tag = envelope["properties"]["delivery_tag"]
        reply_to = envelope["properties"]["reply_to"]
        event_tag = ""
        event_time = None
        if len(commands) > 1:
            event = json.loads(commands[1][1][1])
            event_tag = event["properties"]["delivery_tag"]
            fields = json.loads(base64.b64decode(event["body"]))
            event_time = (fields["clock"], fields["timestamp"], fields["utcoffset"])
        rendered = template.render(
            job_id,
            args,
            kwargs,
            reply_to,
            _no_clock,
            tags=(tag, event_tag),
            event_time=event_time,
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return False
    return rendered == pack(commands)


def _no_clock() -> int:
    raise AssertionError("the captured clock is used")
