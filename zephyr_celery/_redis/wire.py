"""Lean Redis connections for the two hot paths: sending job messages, and result pub/sub.

redis-py's asyncio client spends far more CPU per command than the commands cost
Redis: a job message (two commands) or a result notification went through pools,
locks, timeouts and a general RESP parser. The traffic on these two connections is
narrow, so each gets an :class:`asyncio.Protocol` of its own:

- :class:`Replies` pipelines packed commands whose replies are one line each
  (LPUSH, PUBLISH, PEXPIRE, AUTH, SELECT, WAIT) and resolves a future per
  submission once its count of replies is in (with the last reply's integer
  when asked: WAIT's count of replicas);
- :class:`PubSub` carries SUBSCRIBE/UNSUBSCRIBE and hands every message and
  confirmation to a callback.

Both are used for plain ``redis://`` and ``unix://`` URLs (host, port, db, user,
password); a URL with anything more (TLS, timeouts, client options) keeps
redis-py's own connection.

Private internals used:

- ``redis._parsers.BaseParser.parse_error``
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py's mapping of error replies to its exception classes
    from redis._parsers import BaseParser

    _parse_error: Callable[[str], ResponseError] = BaseParser.parse_error
except ImportError:  # pragma: no cover - another redis-py layout
    _parse_error = ResponseError

#: Seconds to connect (and authenticate) before the attempt counts as failed.
CONNECT_TIMEOUT = 10.0
#: Seconds without a single reply, while replies are due, after which the peer counts
#: as gone (a dead host sends no reset): the broker's ``socket_timeout`` by default.
REPLY_TIMEOUT = 30.0
#: Bytes of commands gathered for one write at most.
FLUSH_SIZE = 1 << 20

Commands = list[tuple[str, tuple[Any, ...]]]


def plain_params(url: str) -> dict[str, Any] | None:
    """Where to connect for ``url``, or ``None`` when the URL asks for more than
    an address and credentials (only redis-py's connection handles that)."""
    try:
        params: dict[str, Any] = dict(parse_url(url))
    except ValueError:
        return None
    connection_class = params.pop("connection_class", None)
    if connection_class not in (None, UnixDomainSocketConnection):
        return None  # TLS
    if set(params) - {"host", "port", "db", "username", "password", "path"}:
        return None
    return params


def pack(commands: Commands) -> bytes:
    """Commands as RESP, the way redis-py packs them (str as UTF-8, numbers as text)."""
    parts = []
    for name, args in commands:
        items = [name.upper(), *args]
        parts.append(b"*%d\r\n" % len(items))
        for item in items:
            data = arg_bytes(item)
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def arg_bytes(item: Any) -> bytes:
    """One command argument as redis-py encodes it."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bool):
        raise TypeError("a bool is not a Redis argument")
    if isinstance(item, int):
        return b"%d" % item
    if isinstance(item, float):
        return repr(item).encode()
    raise TypeError(f"not a Redis argument: {type(item).__name__}")


class _Base(asyncio.Protocol):
    """Submissions waiting for line replies, in order; losing the connection fails them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        # Per submission, in order: [replies still due, future, first error, whether
        # its future gets the last reply's integer].
        self._waiting: deque[list[Any]] = deque()
        self.closed = False
        self._replies_seen = 0
        #: Set (to the error) once the connection is gone.
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def submit(self, packed: bytes, replies: int, *, last: bool = False) -> asyncio.Future[Any]:
        """Send ``packed``; the future ends once its ``replies`` replies are in.

        Its result is ``None``, or with ``last=True`` the last reply's integer.
        """
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed or self._transport is None:
            future.set_exception(RedisConnectionError("connection to Redis closed"))
            return future
        self._waiting.append([replies, future, None, last])
        self._write(packed)
        return future

    def _write(self, packed: bytes) -> None:
        assert self._transport is not None
        self._transport.write(packed)

    def _reply(self, error: ResponseError | None, value: Any = None) -> bool:
        """Count one line reply against the oldest submission (False: none waits).

        ``value`` is the reply's integer when the submission asked for its last one."""
        self._replies_seen += 1
        waiting = self._waiting
        if not waiting:
            return False
        entry = waiting[0]
        if error is not None and entry[2] is None:
            entry[2] = error
        entry[0] -= 1
        if entry[0] == 0:
            waiting.popleft()
            future = entry[1]
            if not future.done():
                if entry[2] is None:
                    future.set_result(value)
                else:
                    future.set_exception(entry[2])
        return True

    def _broken(self, why: str) -> None:
        self._fail(RedisConnectionError(f"Redis connection out of step: {why}"))
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        while self._waiting:
            future = self._waiting.popleft()[1]
            if not future.done():
                future.set_exception(error)
        if not self.lost.done():
            self.lost.set_exception(error)
            self.lost.exception()  # retrieved: nobody has to await it

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class Replies(_Base):
    """Pipelined commands with one-line replies (an integer, a status or an error).

    Replies come in the order the commands went out, so each submission waits for
    its own count of them. What is submitted while replies are due goes out in one
    write at the end of the loop iteration.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, reply_timeout: float = REPLY_TIMEOUT
    ) -> None:
        super().__init__(loop)
        self._reply_timeout = reply_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_soon = False

    def submit(self, packed: bytes, replies: int, *, last: bool = False) -> asyncio.Future[Any]:
        future = super().submit(packed, replies, last=last)
        if self._watchdog is None and not self.closed:
            self._watch()
        return future

    def _watch(self) -> None:
        seen = self._replies_seen
        self._watchdog = self._loop.call_later(self._reply_timeout, self._check_alive, seen)

    def _check_alive(self, seen: int) -> None:
        """Fail what waits when no reply at all came in for a whole reply timeout."""
        self._watchdog = None
        if self.closed or not self._waiting:
            return
        if self._replies_seen != seen:
            self._watch()
            return
        self._fail(RedisTimeoutError(f"no reply from Redis in {self._reply_timeout:g}s"))
        if self._transport is not None:
            self._transport.abort()

    def _write(self, packed: bytes) -> None:
        if self._flush_soon:
            self._out.append(packed)
            self._out_size += len(packed)
            if self._out_size > FLUSH_SIZE:  # a burst: don't gather it all in memory
                self._write_out()
        elif len(self._waiting) == 1:
            assert self._transport is not None
            self._transport.write(packed)  # an idle connection: out right away
        else:
            self._out.append(packed)
            self._out_size = len(packed)
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        self._write_out()

    def _write_out(self) -> None:
        if self._out and self._transport is not None and not self.closed:
            data = b"".join(self._out)
            self._out.clear()
            self._transport.write(data)
        self._out_size = 0

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\r\n", start)
            if end < 0:
                break
            kind = buffer[start]
            value = None
            if kind == 58 or kind == 43:  # ":" integer, "+" status
                error = None
                if kind == 58 and self._wants_value():
                    value = int(buffer[start + 1 : end])
            elif kind == 45:  # "-" error
                error = _parse_error(buffer[start + 1 : end].decode("utf-8", "replace"))
            else:
                self._broken(f"unexpected reply {bytes(buffer[start:end])[:40]!r}")
                return
            start = end + 2
            if not self._reply(error, value):
                self._broken("a reply nobody waits for")
                return
        del buffer[:start]

    def _wants_value(self) -> bool:
        """Whether the next reply is the last of a submission that asked for it."""
        waiting = self._waiting
        return bool(waiting) and waiting[0][0] == 1 and waiting[0][3]

    def _fail(self, error: Exception) -> None:
        self._out.clear()
        super()._fail(error)


# A value parse_value could not finish: more data is needed.
_INCOMPLETE: Any = object()


def parse_value(buffer: bytearray, start: int) -> tuple[Any, int]:
    """One RESP2/RESP3-push value at ``start``: (value, where the next one starts).

    Bulk strings are bytes, integers int, arrays (``*`` or ``>``) lists, statuses
    str, errors ResponseError instances; ``_INCOMPLETE`` when the buffer ends first.
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return _INCOMPLETE, start
    kind = buffer[start]
    if kind == 36:  # "$" bulk string
        size = int(buffer[start + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            return _INCOMPLETE, start
        return bytes(buffer[end + 2 : stop]), stop + 2
    if kind == 42 or kind == 62:  # "*" array, ">" push
        count = int(buffer[start + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        position = end + 2
        for _ in range(count):
            item, position = parse_value(buffer, position)
            if item is _INCOMPLETE:
                return _INCOMPLETE, start
            items.append(item)
        return items, position
    if kind == 58:  # ":" integer
        return int(buffer[start + 1 : end]), end + 2
    if kind == 43:  # "+" status
        return buffer[start + 1 : end].decode("utf-8", "replace"), end + 2
    if kind == 45:  # "-" error
        return _parse_error(buffer[start + 1 : end].decode("utf-8", "replace")), end + 2
    raise ValueError(f"unexpected RESP type {bytes(buffer[start:end])[:40]!r}")


class PubSub(_Base):
    """A subscribed connection: each pushed message or (un)subscribe confirmation goes
    to ``on_push(kind, channel, data)``; status and error replies (AUTH, SELECT) go
    to submissions in order."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_push: Callable[[bytes, bytes, Any], None]
    ) -> None:
        super().__init__(loop)
        self._on_push = on_push

    def send(self, packed: bytes) -> None:
        """Send commands whose answers are pushes (SUBSCRIBE, UNSUBSCRIBE)."""
        if not self.closed and self._transport is not None:
            self._transport.write(packed)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while start < len(buffer):
                value, position = parse_value(buffer, start)
                if value is _INCOMPLETE:
                    break
                start = position
                if isinstance(value, list):
                    if len(value) == 3 and isinstance(value[0], bytes):
                        self._on_push(value[0], value[1], value[2])
                    # anything else (a pong) carries nothing for us
                elif not self._reply(value if isinstance(value, ResponseError) else None):
                    self._broken(f"a reply nobody waits for: {value!r}")
                    return
        except ValueError as exc:
            self._broken(str(exc))
            return
        del buffer[:start]


async def connect(params: dict[str, Any], factory: Callable[[], _Base]) -> Any:
    """Connect, authenticate and select the database; return the protocol."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_TIMEOUT):
        if params.get("path"):
            transport, protocol = await loop.create_unix_connection(factory, params["path"])
        else:
            transport, protocol = await loop.create_connection(
                factory, params.get("host") or "localhost", int(params.get("port") or 6379)
            )
        try:
            hello: Commands = []
            password = params.get("password")
            if password is not None:
                username = params.get("username")
                hello.append(("AUTH", (password,) if username is None else (username, password)))
            db = int(params.get("db") or 0)
            if db:
                hello.append(("SELECT", (db,)))
            if hello:
                await protocol.submit(pack(hello), len(hello))
        except BaseException:
            transport.abort()
            raise
    return protocol
