"""Everything between our jobs and a Redis server: one home for the Redis machinery.

Celery and kombu already speak Redis; each module here extends one of their classes
at its documented seam, or is a small piece of our own where their path stalls the
event loop or can lose a message. Which is which:

=================  ===========================================  ==========================
module             class or function                            extends
=================  ===========================================  ==========================
``transport``      ``Transport``, ``Channel``, ``QoS``,         kombu's Redis transport
                   ``MultiChannelPoller``                       (``kombu.transport.redis``)
``sentinel_``      ``SentinelTransport``, ``SentinelChannel``:  ours on kombu's
``transport``      the same transport on the master the         ``SentinelChannel``
                   Sentinels name, following fail-overs
``stranded``       ``Stranded``: what a worker held when its    ours (used by the
                   broker connection dropped, until it is back  transport)
``backend``        ``RedisBackend``, ``SentinelBackend``        Celery's Redis and
                                                                Sentinel result backends
``master``         ``Target``, ``lean_target``: the server a    ours (zephyr_core's
                   lean connection goes to (the Sentinels'      ``resolve_master``)
                   master now, on a Sentinel URL)
``replicas``       ``Replicas``, ``NotReplicatedError``:        ours (Redis ``WAIT``)
                   ``JOB_ENQUEUE_REPLICAS``
``publisher``      ``RedisPublisher``: sends job messages       ours (uses kombu's
                   from the event loop                          producer to capture)
``templates``      ``Template``: a job message rendered         ours (checked against
                   from Celery's own output                     Celery's output)
``waiter``         ``ResultWaiter``: ``JobHandle.wait()``       ours (reads what Celery's
                   on the result channel's pub/sub              backend publishes)
``wire``           ``Replies``, ``PubSub``: lean asyncio        ours (asyncio.Protocol;
                   Redis protocols for the two hot paths        redis-py's URL parser)
=================  ===========================================  ==========================

The broker settings that pick the transport are in :mod:`zephyr_celery._broker`;
the result backend is chosen by ``BACKEND_ALIASES`` in :mod:`.backend`.
"""
