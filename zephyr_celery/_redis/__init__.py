"""Everything between our jobs and a Redis server: one home for the Redis machinery.

Celery and kombu already speak Redis; each module here extends one of their classes
at its documented seam, or is a small piece of our own where their path stalls the
event loop or can lose a message. Which is which:

=================  ===========================================  ==========================
module             class or function                            extends
=================  ===========================================  ==========================
``transport``      ``Transport``, ``Channel``, ``QoS``,         kombu's Redis transport
                   ``MultiChannelPoller``                       (``kombu.transport.redis``)
``stranded``       ``Stranded``: what a worker held when its    ours (used by the
                   broker connection dropped, until it is back  transport)
``backend``        ``RedisBackend``                             Celery's Redis result
                                                                backend
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
