"""kombu's Redis transport, with no moment where a taken message exists only in a worker.

kombu takes a message with ``BRPOP`` and records it as unacknowledged (the ``unacked``
hash and its ``unacked_index`` sorted set) in a second round trip. A worker killed
between the two, or while the ``BRPOP`` reply waits in its socket buffer, loses the
message for good. Here every message leaves its queue through :data:`POP_SCRIPT`, a
Lua script that pops it and writes kombu's own unacked record in one atomic step, so
kombu's acks, rejects and visibility-timeout restores work on it unchanged.

A script cannot block, so an idle consumer waits with ``BLMOVE key key RIGHT RIGHT``
pipelined with the pop: it returns as soon as the list has a message but leaves the
message where it is (a move onto itself), and Redis runs the pop right after, in the
same round trip. ``BLMOVE`` watches
one list, the default-priority list of the queue next in kombu's round-robin; a
message landing on another queue or priority list reaches an idle worker within
``wake_timeout`` seconds. Busy workers never wait: they pop again right after each
message, in kombu's fair order (priority first, queues round-robin).

Two more changes make a dead worker's messages come back promptly:

- the live consumer sweeps for unacked messages older than the visibility timeout
  every ``unacked_restore_interval`` seconds (a quarter of the timeout by default,
  instead of kombu's 10 s times a throttle of 10), and
- it refreshes the timestamp of the messages it still holds at the same pace, so the
  visibility timeout measures how long a worker has been silent, not how long a job
  or an ETA wait takes: a live worker's long job or ETA message is not redelivered.
"""

# kombu ships py.typed, yet the transport's methods carry no annotations.
# mypy: allow-untyped-calls

from __future__ import annotations

import hashlib
import math
from queue import Empty
from time import monotonic, time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from zephyr_core import ConfigError

#: Pops the first message found in KEYS[3..] (tried in order) and, when ARGV[1 + i]
#: is "1" for that key, records it as unacked exactly as kombu's QoS.append does:
#: HSET KEYS[1] <delivery_tag> '[<payload>, <exchange>, <routing_key>]' and
#: ZADD KEYS[2] ARGV[1] <delivery_tag>. The payload is embedded as the very string
#: popped (never re-encoded), so what is restored is byte for byte what was sent.
#: Returns {key, payload, recorded (0/1)} or nil when every list is empty.
POP_SCRIPT = """
for i = 3, #KEYS do
  local payload = redis.call('RPOP', KEYS[i])
  if payload then
    if ARGV[i - 1] == '1' then
      local ok, message = pcall(cjson.decode, payload)
      if ok and type(message) == 'table' and type(message['properties']) == 'table' then
        local properties = message['properties']
        local tag = properties['delivery_tag']
        local info = properties['delivery_info']
        if type(tag) == 'string' and type(info) == 'table' then
          redis.call('HSET', KEYS[1], tag, '[' .. payload .. ',' ..
            cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
          redis.call('ZADD', KEYS[2], ARGV[1], tag)
          return {KEYS[i], payload, 1}
        end
      end
    end
    return {KEYS[i], payload, 0}
  end
end
return false
"""
POP_SHA = hashlib.sha1(POP_SCRIPT.encode()).hexdigest()

#: BLMOVE arrived in Redis 6.2.
MIN_REDIS_VERSION = (6, 2)
#: Upper bound of the sweep and heartbeat interval, whatever the visibility timeout.
MAX_SWEEP_INTERVAL = 10.0
#: Lower bound, so a tiny visibility timeout cannot make a worker hammer Redis.
MIN_SWEEP_INTERVAL = 0.25
#: Default seconds an idle consumer waits on one list before looking at all of them.
DEFAULT_WAKE_TIMEOUT = 0.25


def sweep_interval(visibility_timeout: float) -> float:
    """Seconds between restore sweeps (and heartbeats) for ``visibility_timeout``.

    A quarter of the timeout, so a dead worker's messages come back between 1 and
    1.25 visibility timeouts after it last spoke, within [0.25 s, 10 s].
    """
    return min(MAX_SWEEP_INTERVAL, max(MIN_SWEEP_INTERVAL, visibility_timeout / 4))


class QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation; the unacked record is already written by the pop."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.take_recorded(delivery_tag):
            # Recorded atomically with the pop: only the in-memory bookkeeping is left.
            virtual.QoS.append(self, message, delivery_tag)
        else:  # a fanout (pub/sub) message, or one popped by something else
            super().append(message, delivery_tag)

    def refresh_unacked(self) -> int:
        """Mark the messages this consumer still holds as alive; returns how many.

        ``ZADD XX`` only touches members still in the index: a message acked or
        restored meanwhile is not brought back.
        """
        tags = [tag for tag in self._delivered if tag not in self._dirty]
        if not tags:
            return 0
        with self.channel.conn_or_acquire() as client:
            client.zadd(self.unacked_index_key, dict.fromkeys(tags, time()), xx=True)
        return len(tags)


class Channel(kombu_redis.Channel):
    """A Redis channel whose every pop records the message as unacked atomically."""

    QoS = QoS

    #: Seconds an idle consumer waits on its first list before popping from all.
    wake_timeout = DEFAULT_WAKE_TIMEOUT

    from_transport_options = (*kombu_redis.Channel.from_transport_options, "wake_timeout")  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._recorded: set[str] = set()
        self._no_ack_queues: set[str] = set()
        self._waiting = False  # the last pop found nothing: block before the next
        self._pending: list[str] = []  # the commands whose replies are due
        self._script_loaded = False
        super().__init__(*args, **kwargs)
        self._check_server_version()
        options = self.connection.client.transport_options
        interval = sweep_interval(float(self.visibility_timeout))
        if "unacked_restore_throttle" not in options:
            self.unacked_restore_throttle = 1  # the timer interval alone paces sweeps
        if "unacked_mutex_expire" not in options:
            # A worker killed inside a sweep holds the mutex until it expires:
            # kombu's 300 s would stall every restore for five minutes.
            self.unacked_mutex_expire = max(1, math.ceil(4 * interval))

    def _check_server_version(self) -> None:
        try:
            info = self.client.info("server")
        except redis.ResponseError:  # INFO renamed away: BLMOVE will tell
            return
        version = str(info.get("redis_version", ""))
        numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        if numbers and numbers < MIN_REDIS_VERSION:
            self._disconnect_pools()
            raise ConfigError(
                f"JOB_QUEUE_URL: the Redis server is version {version}; zephyr's Redis "
                "transport needs Redis 6.2 or later (or Valkey) for BLMOVE",
                field="JOB_QUEUE_URL",
            )

    # -- bookkeeping shared with QoS -------------------------------------------------

    def take_recorded(self, delivery_tag: str) -> bool:
        """True once for a message whose unacked record the pop already wrote."""
        try:
            self._recorded.remove(delivery_tag)
        except KeyError:
            return False
        return True

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # A no_ack consumer never acks: recording its messages would redeliver them.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _pop_command(self, keys: list[str], record: list[bool]) -> list[Any]:
        prefix = self.global_keyprefix
        script_keys = [
            prefix + self.unacked_key,
            prefix + self.unacked_index_key,
            *(prefix + key for key in keys),
        ]
        args = [repr(time()), *("1" if flag else "0" for flag in record)]
        return [len(script_keys), *script_keys, *args]

    def _queue_of(self, key: Any) -> str:
        name: str = bytes_to_str(key)[len(self.global_keyprefix) :]
        # Priority lists are "<queue><sep><priority>"; a queue name may not hold sep.
        return name.rsplit(self.sep, 1)[0] if self.sep in name else name

    def _deliver_popped(self, key: Any, item: Any, recorded: Any) -> None:
        queue = self._queue_of(key)
        self._queue_cycle.rotate(queue)
        payload = loads(bytes_to_str(item))
        tag = None
        if int(recorded):
            tag = payload["properties"]["delivery_tag"]
            self._recorded.add(tag)
        try:
            self.connection._deliver(payload, queue)
        finally:
            if tag is not None:
                self._recorded.discard(tag)

    # -- the event loop's consume path (replaces BRPOP) ------------------------------

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        pairs = [(queue, pri) for pri in self.priority_steps for queue in queues]
        keys = [self._q_for_pri(queue, pri) for queue, pri in pairs]
        record = [queue not in self._no_ack_queues for queue, _ in pairs]
        script = ["EVALSHA", POP_SHA] if self._script_loaded else ["EVAL", POP_SCRIPT]
        commands: list[list[Any]] = [[*script, *self._pop_command(keys, record)]]
        if self._waiting:
            wait = self.wake_timeout if timeout is None else min(timeout, self.wake_timeout)
            key = self.global_keyprefix + keys[0]
            # Block until the first list has a message, taking nothing (a move of its
            # last element onto itself); Redis runs the pop right after it returns.
            commands.insert(0, ["BLMOVE", key, key, "RIGHT", "RIGHT", wait])
        connection = self.client.connection
        self._pending = [command[0] for command in commands]
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        connection.send_packed_command(connection.pack_commands(commands))

    def _brpop_read(self, **options: Any) -> bool:
        pending, self._pending = self._pending, []
        try:
            connection = self.client.connection
            replies: list[Any] = []
            for command in pending:  # the BLMOVE's reply (if any), then the pop's
                try:
                    replies.append(self.client.parse_response(connection, command, **options))
                except self.connection_errors:
                    connection.disconnect()  # the next poll reconnects
                    raise
                except redis.ResponseError as exc:
                    replies.append(exc)  # read every reply before raising: keep in step
            reply = replies[-1] if replies else None
            if isinstance(reply, NoScriptError):  # Redis restarted and forgot the script
                self._script_loaded = self._waiting = False
                raise Empty()
            for error in replies:
                if isinstance(error, redis.ResponseError):
                    raise error
            self._script_loaded = True
            if not reply:
                self._waiting = True
                raise Empty()
            self._waiting = False
            key, item, recorded = reply
            self._deliver_popped(key, item, recorded)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    # -- synchronous gets ------------------------------------------------------------

    def _pop(self, queue: str, record: bool) -> Any:
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps]
        command = self._pop_command(keys, [record] * len(keys))
        # A plain client on the same pool: kombu's prefixing client would prefix only
        # the first key of a script, and every key here already carries the prefix.
        client = redis.Redis(connection_pool=self.pool)
        try:
            reply = client.evalsha(POP_SHA, *command)
        except NoScriptError:
            reply = client.eval(POP_SCRIPT, *command)
        if not reply:
            raise Empty()
        _key, item, recorded = reply
        payload = loads(bytes_to_str(item))
        if int(recorded):
            self._recorded.add(payload["properties"]["delivery_tag"])
        return payload

    def _get(self, queue: str, timeout: Any = None) -> Any:
        return self._pop(queue, record=True)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        try:
            payload = self._pop(queue, record=not no_ack)
        except Empty:
            return None
        message = self.Message(payload, channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`: select it with ``broker_transport``."""

    Channel = Channel
    driver_name = "redis"

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        options = connection.client.transport_options
        visibility = float(options.get("visibility_timeout", Channel.visibility_timeout))
        interval = float(options.get("unacked_restore_interval") or sweep_interval(visibility))
        cycle: Any = self.cycle
        # Replace kombu's sweep timer (10 s by default) with one paced on the timeout.
        cycle._restore_messages_tref.cancel()
        cycle._restore_messages_tref = loop.call_repeatedly(interval, cycle.maybe_restore_messages)
        old = getattr(cycle, "_zephyr_heartbeat_tref", None)
        if old is not None:
            old.cancel()
        cycle._zephyr_heartbeat_tref = loop.call_repeatedly(interval, self.refresh_unacked)

    def refresh_unacked(self) -> None:
        """Heartbeat: keep the messages this worker holds from looking abandoned."""
        cycle: Any = self.cycle
        for channel in list(cycle._channels):
            try:
                channel.qos.refresh_unacked()
            except channel.connection_errors:
                return  # the consumer reconnects on its own; try again next tick


#: The same class under a second name: kombu names a connection's URL scheme after
#: the ``broker_transport`` string, and this one maps to ``rediss``.
TLSTransport = Transport
