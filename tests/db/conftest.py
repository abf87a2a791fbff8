"""Fixtures: one replicated PostgreSQL set for the session (tests put back what they stop)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.db.replication import ReplicationSet, available, started
from tests.servers import need, wait_until


@pytest.fixture(scope="session")
def replicated() -> Iterator[ReplicationSet]:
    """A primary and two streaming replicas. A test that stops, pauses or fences one
    restores it before it ends (the ``servers`` fixture below checks that)."""
    need(available(), "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)")
    servers = started(2)
    yield servers
    servers.stop()


@pytest.fixture
def servers(replicated: ReplicationSet) -> Iterator[ReplicationSet]:
    """The session set, checked back to normal after the test (every replica streaming)."""
    yield replicated
    for replica in replicated.replicas:
        if not replica.accepts():
            replica.start()
        replica.replay(paused=False)
    for replica in replicated.replicas:
        wait_until(replica.streaming, 20, f"replica on {replica.port} to stream again")


@pytest.fixture
def table(servers: ReplicationSet, request: pytest.FixtureRequest) -> str:
    """A fresh table ``(id serial, name text)`` on the primary, already on every replica."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40].lower()
    servers.primary.psql(
        f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id serial PRIMARY KEY, name text)"
    )
    servers.wait_replicated(f"SELECT to_regclass('{name}') IS NOT NULL", "t")
    return name
