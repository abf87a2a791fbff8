"""How values become bytes: JSON by default, msgpack, or pickle signed with HMAC.

Integers are always stored as decimal text, whatever the serializer, so Redis can
``INCRBY`` a value written by ``set`` and ``get`` reads back what ``incr`` wrote.
JSON and msgpack store an ``int`` subclass (an ``IntEnum`` member) as its plain value
too, which is what they would read back anyway; signed pickle keeps the member.
Every serializer is an aiocache ``BaseSerializer`` (``encoding=None``: bytes in, bytes out).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any

from aiocache.serializers import BaseSerializer

_INT_START = frozenset(b"-0123456789")


class BadSignature(ValueError):
    """A signed payload's HMAC does not match: it was not written with our key."""


class Serializer(BaseSerializer):  # type: ignore[misc]
    """Base of our serializers: bytes payloads, decimal integers."""

    name = "base"
    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> bytes:
        if type(value) is int:
            return str(value).encode()
        return self._dumps(value)

    def loads(self, value: bytes | None) -> Any:
        if value is None:
            return None
        if value[:1] and value[0] in _INT_START and value.lstrip(b"-").isdigit():
            return int(value)
        return self._loads(value)

    def _dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def _loads(self, value: bytes) -> Any:
        raise NotImplementedError


# One encoder for every call: json.dumps with options builds a new JSONEncoder each time.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class JsonSerializer(Serializer):
    """Standard JSON: tuples come back as lists, dict keys as strings."""

    name = "json"

    def _dumps(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(int(value)).encode()  # an IntEnum member: its decimal value
        return _encode_json(value).encode()

    def _loads(self, value: bytes) -> Any:
        return json.loads(value)


class MsgpackSerializer(Serializer):
    """msgpack: compact and fast; bytes stay bytes, tuples come back as lists."""

    name = "msgpack"

    def __init__(self) -> None:
        super().__init__()
        import msgpack  # type: ignore[import-untyped]

        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def _dumps(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool):
            # An int subclass: msgpack packs 45 and 48-57 as one byte, b"-" or a digit,
            # which ``loads`` would read as decimal text (IntEnum member 50 came back 2).
            return str(int(value)).encode()
        packed: bytes = self._packb(value, use_bin_type=True)
        return packed

    def _loads(self, value: bytes) -> Any:
        return self._unpackb(value, raw=False, strict_map_key=False)


class SignedPickleSerializer(Serializer):
    """pickle, with an HMAC-SHA256 over every payload, checked before unpickling.

    A payload whose signature does not verify is never unpickled: ``loads`` raises
    :class:`BadSignature` and the cache treats the entry as a miss.
    """

    name = "pickle"
    _MARK = b"P"

    def __init__(self, signing_key: bytes) -> None:
        super().__init__()
        self._key = signing_key

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def _dumps(self, value: Any) -> bytes:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return self._MARK + self._sign(data) + data

    def _loads(self, value: bytes) -> Any:
        mac, data = value[1:33], value[33:]
        if value[:1] != self._MARK or not hmac.compare_digest(mac, self._sign(data)):
            raise BadSignature("the cached payload's signature does not match the signing_key")
        return pickle.loads(data)  # verified above with our HMAC key


class RawBytes(BaseSerializer):  # type: ignore[misc]
    """For our aiocache tiers: payloads are already bytes, stored as they are."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


def make_serializer(name: str, signing_key: bytes | None = None) -> Serializer:
    """The serializer a cache's config names (validated by ``_config``)."""
    if name == "msgpack":
        return MsgpackSerializer()
    if name == "pickle":
        if signing_key is None:
            raise ValueError("pickle needs a signing_key")
        return SignedPickleSerializer(signing_key)
    return JsonSerializer()
