"""How far behind a replica is, from what PostgreSQL reports (pure logic, no I/O)."""

from __future__ import annotations

#: One row from any server: whether it replays WAL, whether it has replayed all it
#: received, whether its WAL receiver is streaming, seconds since the last replayed
#: commit, and the address the connection reached.
HEALTH_QUERY = """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       COALESCE(pg_catalog.pg_last_wal_receive_lsn() <= pg_catalog.pg_last_wal_replay_lsn(),
                true) AS caught_up,
       -- Without pg_read_all_stats a role sees the receiver's pid but a NULL status:
       -- a receiver running then counts as streaming.
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_wal_receiver
               WHERE status IS NULL OR status = 'streaming') AS streaming,
       EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()
                          - pg_catalog.pg_last_xact_replay_timestamp())::float8 AS since_replay,
       current_setting('transaction_read_only') = 'on' AS read_only
"""


def replica_lag(
    in_recovery: bool, caught_up: bool, streaming: bool, since_replay: float | None
) -> float | None:
    """Seconds a server's data is behind its primary; ``None`` when it cannot be told.

    A primary is never behind. A replica that has replayed everything it received and
    is still streaming is current, however long ago the last commit was (an idle
    primary sends nothing). Otherwise the age of the last replayed commit is the
    lag: replay is paused or slow, or the replica no longer hears from its primary.

    >>> replica_lag(False, True, False, None)
    0.0
    >>> replica_lag(True, True, True, 120.0)
    0.0
    >>> replica_lag(True, False, True, 3.5)
    3.5
    """
    if not in_recovery:
        return 0.0
    if caught_up and streaming:
        return 0.0
    if since_replay is None:
        return None
    return max(since_replay, 0.0)
