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

And a worker whose broker connection drops does not leave what it held to the
visibility timeout (an hour by default): the closing channel puts its messages back
if Redis still answers, else writes them down (:mod:`.stranded`), and the channel
the worker reconnects with puts them back at its first poll, keeping those Celery
still runs (their acknowledgements, arriving on the closed channel, are forwarded).

Private internals used:

- ``kombu.transport.redis.Channel._brpop_start``
- ``kombu.transport.redis.Channel._brpop_read``
- ``kombu.transport.redis.Channel._in_poll``
- ``kombu.transport.redis.Channel._on_connection_disconnect``
- ``kombu.transport.redis.Channel._closing``
- ``kombu.transport.redis.Channel._queue_cycle``
- ``kombu.transport.redis.Channel._q_for_pri``
- ``kombu.transport.redis.Channel._get_publish_topics``
- ``kombu.transport.redis.Channel._put_fanout``
- ``kombu.transport.redis.Channel._disconnect_pools``
- ``kombu.transport.redis.Channel._flush_brpop_reauth``
- ``kombu.transport.redis.Channel._brpop_sent_at``
- ``kombu.transport.redis.QoS._remove_from_indices``
- ``kombu.transport.virtual.QoS._delivered``
- ``kombu.transport.virtual.QoS._dirty``
- ``kombu.transport.redis.MultiChannelPoller._channels``
- ``kombu.transport.redis.MultiChannelPoller._paused_brpop``
- ``kombu.transport.redis.MultiChannelPoller._restore_messages_tref``
- ``kombu.transport.virtual.base.Transport._deliver``
- ``kombu.transport.redis.Channel._get``
"""

# kombu ships py.typed, yet the transport's methods carry no annotations.
# mypy: allow-untyped-calls

from __future__ import annotations

import hashlib
import logging
import math
import threading
import warnings
import weakref
from queue import Empty
from time import monotonic, time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import NoScriptError

from zephyr_celery._redis.stranded import Stranded, Work, stranded_for
from zephyr_core import ConfigError
from zephyr_core._background import current_pid

#: Pops up to ARGV[2] messages from KEYS[3..] (drained in order: priority first) and,
#: when ARGV[i] is "1" for KEYS[i], records each as unacked exactly as kombu's
#: QoS.append does: HSET KEYS[1] <delivery_tag> '[<payload>, <exchange>, <routing_key>]'
#: and ZADD KEYS[2] ARGV[1] <delivery_tag>. The payload is embedded as the very
#: string popped (never re-encoded), so what is restored is byte for byte what was
#: sent. Returns a flat list {key, payload, recorded (0/1), ...} or nil when every
#: list is empty.
#:
#: Decoding each payload with cjson cost Redis ~70 µs a message (the payload is a
#: few KB); ``fields`` reads the three values with plain string searches instead,
#: and decodes only when a search is ambiguous: JSON escapes every quote inside a
#: string, so an unescaped ``"delivery_tag": "`` is a key, and when it occurs once
#: it is kombu's own.
POP_SCRIPT = r"""
local function unique(payload, needle)
  local s, e = string.find(payload, needle, 1, true)
  if s and not string.find(payload, needle, e + 1, true) then return e end
  return nil
end

local function fields(payload)
  local tag_at = unique(payload, '"delivery_tag": "')
  local info_at = unique(payload, '"delivery_info": {')
  if tag_at and info_at then
    local tag = string.match(payload, '^([%w%-]+)"', tag_at + 1)
    local info = string.match(payload, '^([^{}]*)}', info_at + 1)
    if tag and info then
      local exchange = string.match(info, '"exchange": ("[^"\\]*")')
      local routing_key = string.match(info, '"routing_key": ("[^"\\]*")')
      if exchange and routing_key then return tag, exchange, routing_key end
    end
  end
  local ok, message = pcall(cjson.decode, payload)
  if ok and type(message) == 'table' and type(message['properties']) == 'table' then
    local properties = message['properties']
    local tag = properties['delivery_tag']
    local info = properties['delivery_info']
    if type(tag) == 'string' and type(info) == 'table' then
      return tag, cjson.encode(info['exchange']), cjson.encode(info['routing_key'])
    end
  end
  return nil
end

local limit = tonumber(ARGV[2])
local out = {}
local taken = 0
for i = 3, #KEYS do
  while taken < limit do
    local payload = redis.call('RPOP', KEYS[i])
    if not payload then break end
    taken = taken + 1
    local recorded = 0
    if ARGV[i] == '1' then
      local tag, exchange, routing_key = fields(payload)
      if tag then
        local entry = '[' .. payload .. ',' .. exchange .. ',' .. routing_key .. ']'
        redis.call('HSET', KEYS[1], tag, entry)
        redis.call('ZADD', KEYS[2], ARGV[1], tag)
        recorded = 1
      end
    end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = payload
    out[#out + 1] = recorded
  end
  if taken >= limit then break end
end
if taken == 0 then return false end
return out
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
#: Messages one pop takes at most (never more than the prefetch has room for).
MAX_POP_BATCH = 10
#: Deferred commands a channel holds at most while Redis is unreachable; beyond it,
#: callers run their commands themselves (and fail as kombu's would).
MAX_DEFERRED = 10_000
#: Seconds deferred commands wait for a pop to carry them before a round trip of
#: their own (a busy worker pops again within a job's time; an idle one does not).
DEFERRED_FLUSH_DELAY = 0.005

logger = logging.getLogger("zephyr_celery.transport")

#: The consuming channel of each worker event loop, by (process, thread): where
#: acks and event publishes made on that loop are deferred to.
_consumers: dict[tuple[int, int], weakref.ref[Channel]] = {}


def _here() -> tuple[int, int]:
    # The process too: a forked child's thread can have its parent's thread ident.
    # (current_pid: os.getpid() is a system call, and this runs on every ack and event.)
    return current_pid(), threading.get_ident()


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

    # After a broker failure Celery closes the channel and may still restore,
    # acknowledge or refresh through it; kombu would fail with an AttributeError
    # that Celery calls unrecoverable, ending the worker. Instead the closed
    # channel's record of what it held (Stranded) takes the acknowledgements, and
    # the next channel to the same Redis sends them.

    def restore_unacked(self, client: Any = None) -> None:
        """Put back what this channel holds as it closes, as kombu does.

        What cannot be put back now (Redis is gone) is written down for the channel
        the worker reconnects with, which puts it back at once (keeping the jobs
        Celery still runs), instead of leaving it to the visibility timeout.
        """
        # Last delivered first: pushed back one by one at the head of their queues,
        # the first delivered ends up first again.
        messages = dict(self._delivered)
        held = [tag for tag in reversed(messages) if tag not in self._dirty]
        self._delivered.clear()
        if not held:
            return
        stranded = self.channel.stranded
        if self.channel.released():
            stranded.strand({tag: messages[tag] for tag in held})
            return
        done, failure = 0, ""
        try:
            with self.channel.conn_or_acquire(client) as redis_client:
                for tag in held:
                    self.restore_by_tag(tag, client=redis_client)
                    done += 1
        except self.channel.connection_errors as exc:
            # Only its text: the error's traceback holds this frame, and with it
            # the messages, which must be freed once nothing else holds them.
            failure = str(exc)
        finally:
            if self.channel._closing:
                # kombu's close dropped its pools before restoring: drop the one
                # the restore opened, so no connection outlives the channel.
                self.channel._disconnect_pools()
        if done < len(held):
            stranded.strand({tag: messages[tag] for tag in held[done:]})
            logger.warning(
                "Redis unreachable (%s): the %d jobs this worker holds are sorted out "
                "when it reconnects",
                failure,
                len(held) - done,
            )

    def ack(self, delivery_tag: str) -> None:
        if self.channel.released():
            self._forward(delivery_tag, requeue=False)
            return
        self.channel.stranded.acked(delivery_tag)  # sent again after a fail-over
        if self.channel.defer(self._removal(delivery_tag)):
            virtual.QoS.ack(self, delivery_tag)
        else:
            super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self.channel.released():
            self._forward(delivery_tag, requeue=requeue)
            return
        if not requeue:
            self.channel.stranded.acked(delivery_tag)
        if not requeue and self.channel.defer(self._removal(delivery_tag)):
            virtual.QoS.ack(self, delivery_tag)  # as kombu's reject: forget it locally
        else:
            super().reject(delivery_tag, requeue=requeue)

    def _forward(self, delivery_tag: str, requeue: bool) -> None:
        """An ack or reject on a closed channel: for the channel that took over."""
        if not self.channel.stranded.finished(delivery_tag, requeue=requeue):
            # Put back in its queue already: its record now belongs to its next
            # delivery, which this must not remove.
            logger.info("not acknowledged, it went back to its queue: %s", delivery_tag)

    def _removal(self, delivery_tag: str) -> list[list[Any]]:
        """kombu's ack in Redis: the message leaves the unacked hash and its index."""
        prefix = self.channel.global_keyprefix
        return [
            ["ZREM", prefix + self.unacked_index_key, delivery_tag],
            ["HDEL", prefix + self.unacked_key, delivery_tag],
        ]

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        # kombu sweeps as soon as a reconnected worker registers with its event
        # loop: after an outage longer than the visibility timeout, what this worker
        # still runs would look abandoned. Its own held messages are sorted first.
        self.channel._take_over_stranded()
        return super().restore_visible(*args, **kwargs)

    def take_over(self, work: Work, client: Any) -> set[str]:
        """Do what a closed channel of this process left (see :mod:`.stranded`).

        Every step bears repeating (an ack removes what may be gone already; a
        restore of a message no longer unacked does nothing), so work cut short by
        another connection failure is simply handed back and done again.

        Returns:
            The tags adopted (Celery still runs or holds them): kept unacked, and
            refreshed from now on.
        """
        if work.removals:
            pipe = client.pipeline(transaction=False)
            for tag in work.removals:
                self._remove_from_indices(tag, pipe)
            pipe.execute()
        lost: set[str] = set()
        for score in work.pop_scores:
            found = client.zrange(self.unacked_index_key, score, score, byscore=True)
            lost.update(bytes_to_str(tag) for tag in found)
        adopted: set[str] = self.channel.stranded.still_held(work.held)
        if adopted:
            client.zadd(self.unacked_index_key, dict.fromkeys(adopted, time()), xx=True)
        for tag in work.requeues:
            self.restore_by_tag(tag, client=client, leftmost=True)
        for tag in (work.held | lost) - adopted - set(self._delivered):
            self.restore_by_tag(tag, client=client)
        return adopted

    def refresh_unacked(self) -> int:
        """Mark the messages this consumer still holds as alive; returns how many.

        ``ZADD XX`` only touches members still in the index: a message acked or
        restored meanwhile is not brought back.
        """
        tags = [tag for tag in self._delivered if tag not in self._dirty]
        tags += self.channel.stranded.adopted()
        if not tags or self.channel.released():
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
        # The commands whose replies are due on the pop connection, in order: the
        # pop's own (command None) and deferred ones sent along.
        self._pending: list[tuple[str, list[Any] | None]] = []
        # Write-only commands (acks, event publishes) waiting for this loop
        # iteration's round trip.
        self._deferred: list[list[Any]] = []
        self._flush_scheduled = False
        self._script_loaded = False
        super().__init__(*args, **kwargs)
        self._check_server_version()
        #: What this process held on this Redis when a channel to it closed.
        self.stranded: Stranded = stranded_for(self.broker_identity())
        self._pop_score: str | None = None  # the unacked score of the pop in flight
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

    # -- deferred writes -------------------------------------------------------------
    #
    # kombu sends each ack (ZREM + HDEL) and each event (PUBLISH) as a blocking round
    # trip of its own, from the worker's event loop: at a few per job they were most
    # of the consumer's time. On the loop's thread they are deferred instead and
    # ride along with the consumer's next pop, or go in one pipeline at the end of
    # the loop iteration. They are all idempotent or best effort (an ack that never
    # arrives means a redelivery after the visibility timeout, never a loss), and a
    # connection error keeps them for the next try.

    def defer(self, commands: list[list[Any]]) -> bool:
        """Queue ``commands`` for this iteration's round trip; False: run them yourself."""
        if (
            self._closing
            or getattr(self.connection, "hub_thread", None) != _here()
            or len(self._deferred) + len(commands) > MAX_DEFERRED
        ):
            return False
        self._deferred.extend(commands)
        return True

    def released(self) -> bool:
        """Whether this channel's kombu connection is gone (closed, or released)."""
        return self.connection is None or self.connection.client is None

    def flush_deferred(self) -> None:
        """Send the deferred commands in one pipelined round trip."""
        if not self._deferred or self.released():
            return
        commands, self._deferred = self._deferred, []
        pool = self.pool
        try:
            connection = pool.get_connection()
        except self.connection_errors:
            self._keep_deferred(commands)  # Redis is away: for the next try
            return
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            for command in commands:
                try:
                    connection.read_response()
                except redis.ResponseError as exc:
                    logger.warning("Redis refused a deferred %s: %s", command[0], exc)
        except self.connection_errors:
            connection.disconnect()
            self._keep_deferred(commands)
        finally:
            pool.release(connection)

    def _keep_deferred(self, commands: list[list[Any]]) -> None:
        # Sent but unconfirmed: sent again later (ZREM, HDEL, PUBLISH bear repeating).
        room = MAX_DEFERRED - len(self._deferred)
        if room < len(commands):
            logger.warning("dropping %d deferred commands: Redis unreachable", len(commands) - room)
        self._deferred[:0] = commands[:room]

    def _put_fanout(self, exchange: Any, message: Any, routing_key: Any, **kwargs: Any) -> None:
        # Events: deferred to the consumer of this event loop when it uses the same
        # Redis (the worker's event dispatcher has a connection of its own).
        if kwargs.get("_publish_batch") is None:
            found = _consumers.get(_here())
            consumer = found() if found is not None else None
            if consumer is not None and consumer.same_server(self):
                payload = dumps(message)
                topics = self._get_publish_topics(exchange, routing_key)
                if consumer.defer([["PUBLISH", topic, payload] for topic in topics]):
                    return
        super()._put_fanout(exchange, message, routing_key, **kwargs)

    def broker_identity(self) -> tuple[str, int, str, str, str]:
        """The Redis keyspace this channel works on: (host, port, database, user, prefix).

        What a closed channel left (:mod:`.stranded`) is found again by it, so it
        must name the broker, not the connection: a Sentinel channel names the
        master group, which stays the same when another server becomes its master.
        """
        client = self.connection.client
        return (
            str(client.hostname),
            int(client.port or 0),
            str(client.virtual_host),
            str(client.userid),
            str(self.global_keyprefix),
        )

    def same_server(self, other: Channel) -> bool:
        """Whether ``other`` talks to the same Redis keyspace (server or master group)."""
        return self.broker_identity() == other.broker_identity()

    def close(self) -> None:
        if not self.closed:
            found = _consumers.get(_here())
            if found is not None and found() in (self, None):
                del _consumers[_here()]
            if found is not None and found() is self:
                # Its last acks go again: a fail-over may have lost them.
                self.stranded.consumer_closed()
            if self._in_poll:
                # kombu's close reads the pop in flight, and a dead connection's
                # error would end the close before what we hold is put back.
                self._closing = True
                try:
                    self._brpop_read()
                except (Empty, *self.connection_errors):
                    pass  # a lost pop is written down by _brpop_read
            try:
                self.flush_deferred()
            except Exception:  # closing must go on; unsent acks are handed on below
                logger.warning("could not send deferred acks while closing", exc_info=True)
            # Acks Redis has not confirmed: the next channel to it sends them.
            self.stranded.unsent([str(c[2]) for c in self._deferred if c[0] == "HDEL"])
            self._deferred = []
        super().close()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # A no_ack consumer never acks: recording its messages would redeliver them.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _pop_command(self, keys: list[str], record: list[bool], limit: int = 1) -> list[Any]:
        prefix = self.global_keyprefix
        script_keys = [
            prefix + self.unacked_key,
            prefix + self.unacked_index_key,
            *(prefix + key for key in keys),
        ]
        # The score of this pop's unacked records: if its reply is lost, the next
        # channel finds the messages it took by it (see stranded.Stranded.lost_pop).
        self._pop_score = repr(time())
        args = [self._pop_score, str(limit), *("1" if flag else "0" for flag in record)]
        return [len(script_keys), *script_keys, *args]

    def _lost_pop(self) -> None:
        """The pop in flight may have run, but nothing it took was delivered."""
        if self._pop_score is not None:
            self.stranded.lost_pop(self._pop_score)
            self._pop_score = None

    def _pop_limit(self) -> int:
        """How many messages the next pop may take: what the prefetch has room for.

        One for no-ack consumers: a message of theirs is recorded nowhere, so one
        that a failing callback leaves undelivered in a batch would be lost.
        """
        if self._no_ack_queues & set(self.active_queues):
            return 1
        room = self.qos.can_consume_max_estimate()
        return max(1, min(MAX_POP_BATCH, room if room is not None else MAX_POP_BATCH))

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

    def _take_over_stranded(self) -> None:
        """First poll after a reconnection: do what the closed channel left."""
        if not self.stranded.pending:
            return
        work = self.stranded.take()
        if not work.held and not work.requeues and not work.pop_scores:
            # Only acknowledgements (of adopted jobs): they ride along with the pop.
            self._deferred.extend(c for tag in work.removals for c in self.qos._removal(tag))
            return
        try:
            with self.conn_or_acquire() as client:
                adopted = self.qos.take_over(work, client)
        except self.connection_errors:
            self.stranded.give_back(work)  # and the pop below fails and reconnects
            return
        self.stranded.adopt(adopted)
        restored = len(work.held - adopted) + len(work.requeues)
        logger.warning(
            "reconnected: %d jobs this worker held went back to their queues, %d it "
            "still runs or has queued are kept%s",
            restored,
            len(adopted),
            f" ({len(work.pop_scores)} pops whose reply was lost looked up)"
            if work.pop_scores
            else "",
        )

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._take_over_stranded()
        _consumers[_here()] = weakref.ref(self)
        pairs = [(queue, pri) for pri in self.priority_steps for queue in queues]
        keys = [self._q_for_pri(queue, pri) for queue, pri in pairs]
        record = [queue not in self._no_ack_queues for queue, _ in pairs]
        script = ["EVALSHA", POP_SHA] if self._script_loaded else ["EVAL", POP_SCRIPT]
        pop = [*script, *self._pop_command(keys, record, self._pop_limit())]
        commands: list[list[Any]] = [pop]
        if self._waiting:
            wait = self.wake_timeout if timeout is None else min(timeout, self.wake_timeout)
            key = self.global_keyprefix + keys[0]
            # Block until the first list has a message, taking nothing (a move of its
            # last element onto itself); Redis runs the pop right after it returns.
            commands.insert(0, ["BLMOVE", key, key, "RIGHT", "RIGHT", wait])
        # Deferred acks and events go in the same write, after the pop: the socket
        # turns readable on the first reply, and the loop then reads every reply in
        # a row. Before a BLMOVE, their replies would wake it to block on the
        # BLMOVE's for up to wake_timeout, the whole worker stalled.
        deferred, self._deferred = self._deferred, []
        connection = self.client.connection
        self._pending = [(command[0], None) for command in commands]
        self._pending += [(command[0], command) for command in deferred]
        commands += deferred
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        try:
            connection.send_packed_command(connection.pack_commands(commands))
        except self.connection_errors:
            self._lost_pop()  # written in part, it may still have run
            raise

    def scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.flush_deferred()

    def send_with_pop(self) -> None:
        """Send the deferred commands behind the pop in flight; read with its reply."""
        deferred, self._deferred = self._deferred, []
        connection: Any = self._in_poll  # kombu types it bool; it is the connection
        try:
            connection.send_packed_command(connection.pack_commands(deferred))
        except self.connection_errors:
            self._keep_deferred(deferred)  # the pop's read fails too and reconnects
            return
        self._pending += [(command[0], command) for command in deferred]

    def _on_connection_disconnect(self, connection: Any) -> None:
        # redis-py drops a connection whose write failed (send_with_pop's, say)
        # before anything reads the replies due on it, and kombu then forgets the
        # pop in flight: what was sent behind the pop (acks among them) would be
        # lost, their jobs run again after the visibility timeout. Keep them.
        if connection is self._in_poll and self._pending:
            pending, self._pending = self._pending, []
            self._keep_deferred([command for _, command in pending if command is not None])
            self._lost_pop()  # it may have run: nothing it took was delivered
        super()._on_connection_disconnect(connection)

    def _brpop_read(self, **options: Any) -> bool:
        pending, self._pending = self._pending, []
        try:
            connection = self.client.connection
            replies: list[Any] = []
            for at, (name, deferred) in enumerate(pending):
                try:
                    reply = self.client.parse_response(connection, name, **options)
                except self.connection_errors:
                    connection.disconnect()  # the next poll reconnects
                    self._keep_deferred([c for _, c in pending[at:] if c is not None])
                    self._lost_pop()  # read or not, nothing it took was delivered
                    raise
                except redis.ResponseError as exc:
                    reply = exc  # read every reply before raising: keep in step
                if deferred is None:
                    replies.append(reply)  # the BLMOVE's (if any), the pop's
                elif isinstance(reply, redis.ResponseError):
                    logger.warning("Redis refused a deferred %s: %s", name, reply)
            self._pop_score = None  # its reply is here: delivered below
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
            for at in range(0, len(reply), 3):
                self._deliver_popped(reply[at], reply[at + 1], reply[at + 2])
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
        except self.connection_errors:
            self._lost_pop()
            raise
        self._pop_score = None
        if not reply:
            raise Empty()
        _key, item, recorded = reply  # one message: the limit is 1
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


class MultiChannelPoller(kombu_redis.MultiChannelPoller):
    """kombu's poller; each loop iteration ends by sending what is still deferred."""

    hub: Any = None  # kombu's event loop, once registered with one

    def on_poll_start(self) -> None:
        super().on_poll_start()  # starts pops, which carry deferred commands along
        paused = {entry[0] for entry in self._paused_brpop.values()}
        for channel in self._channels:
            if not channel._deferred:
                continue
            if channel._in_poll and channel not in paused:
                channel.send_with_pop()  # its reply is read as soon as it comes
            elif self.hub is None:
                channel.flush_deferred()
            elif not channel._flush_scheduled:
                # No pop to ride along with now (the prefetch is full, say): the
                # next one usually starts within a job's time; else they go alone.
                channel._flush_scheduled = True
                self.hub.call_later(DEFERRED_FLUSH_DELAY, channel.scheduled_flush)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`: select it with ``broker_transport``."""

    Channel = Channel
    driver_name = "redis"
    #: (process, thread) of the event loop this transport is registered with.
    hub_thread: tuple[int, int] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = MultiChannelPoller()  # type: ignore[assignment]

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.hub_thread = _here()
        # Celery warns at every connection loss that it will terminate running jobs
        # by default in Celery 6; on Redis they keep running on purpose (see
        # zephyr_celery._broker). Set here: Celery's logging setup, which runs
        # before a worker connects, turns its own warnings back on.
        warnings.filterwarnings(
            "ignore", message=r"\s*In Celery 5\.1 we introduced", category=Warning
        )
        super().register_with_event_loop(connection, loop)
        cycle: Any = self.cycle
        cycle.hub = loop
        options = connection.client.transport_options
        visibility = float(options.get("visibility_timeout", Channel.visibility_timeout))
        interval = float(options.get("unacked_restore_interval") or sweep_interval(visibility))
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
