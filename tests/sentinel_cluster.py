"""A real Sentinel setup on free loopback ports: a primary, replicas and sentinels.

Each node is a ``redis-server`` process (sentinels with ``--sentinel`` and a generated config),
with short ``down-after-milliseconds`` / ``failover-timeout`` so that a failover takes seconds.
The data nodes require a password, given in the URL the way Celery takes it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_port
from tests.waiting import redis_answers, wait_until

MASTER = "mymaster"
PASSWORD = "s3cret-pw"


def _exe() -> str:
    exe = shutil.which("redis-server")
    assert exe is not None, "redis-server is not installed (apt-get install redis-server)"
    return exe


def _wait_ping(port: int, password: str | None, timeout_s: float = 10) -> None:
    client = redis.Redis(port=port, password=password, socket_timeout=1)
    try:
        wait_until(lambda: redis_answers(client), timeout=timeout_s, interval=0.02)
    finally:
        client.close()


class SentinelCluster:
    """``replicas`` replicas of one primary, watched by ``sentinels`` sentinels (quorum 2)."""

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.dir = directory
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.nodes: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinel_procs: dict[int, subprocess.Popen[bytes]] = {}
        self.first_primary = 0

    # --- the URL our settings take ---------------------------------------------------------------

    @property
    def url(self) -> str:
        ports = list(self.sentinel_procs)
        first = f"sentinel://:{PASSWORD}@127.0.0.1:{ports[0]}"
        return ";".join([first, *(f"sentinel://127.0.0.1:{p}" for p in ports[1:])]) + "/0"

    # --- processes ---------------------------------------------------------------------------

    def start_node(self, port: int, replica_of: int | None = None, *, promotable: bool = True) -> None:
        """``promotable=False``: ``replica-priority 0`` (a node that comes back empty must not be
        promoted before its first sync: Sentinel would take its empty data set for the truth)."""
        d = self.dir / f"node-{port}"
        d.mkdir(exist_ok=True)
        args = [
            _exe(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(d),
            "--requirepass", PASSWORD,
            "--masterauth", PASSWORD,
            "--maxmemory-policy", "noeviction",
            "--loglevel", "notice",
            "--logfile", str(d / "redis.log"),
            "--enable-debug-command", "local",  # DEBUG SLEEP: a replica that falls behind
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        if not promotable:
            args += ["--replica-priority", "0"]
        self.nodes[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(port, PASSWORD)

    def start_sentinel(self, port: int, primary: int) -> None:
        d = self.dir / f"sentinel-{port}"
        d.mkdir(exist_ok=True)
        conf = d / "sentinel.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {d}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
            f"sentinel auth-pass {MASTER} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
            f"logfile {d / 'sentinel.log'}\n"
        )
        self.sentinel_procs[port] = subprocess.Popen(
            [_exe(), str(conf), "--sentinel", "--loglevel", "notice"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_ping(port, None)

    def start(self, timeout_s: float = 30) -> SentinelCluster:
        primary = free_port()
        self.first_primary = primary
        self.start_node(primary)
        for _ in range(self.n_replicas):
            self.start_node(free_port(), replica_of=primary)
        for _ in range(self.n_sentinels):
            self.start_sentinel(free_port(), primary)
        # Ready when every sentinel knows the others and every replica, and the replicas are in sync.
        wait_until(self.ready, timeout=timeout_s, interval=0.2)
        return self

    def ready(self) -> bool:
        for port in self.sentinel_procs:
            s = redis.Redis(port=port, decode_responses=True, socket_timeout=1)
            try:
                info = s.execute_command("SENTINEL", "MASTER", MASTER)
                state = dict(zip(info[::2], info[1::2], strict=True)) if isinstance(info, list) else info
                if int(state["num-other-sentinels"]) < self.n_sentinels - 1:
                    return False
                if int(state["num-slaves"]) < self.n_replicas:
                    return False
            except redis.RedisError:
                return False
            finally:
                s.close()
        return self.replicas_in_sync() >= self.n_replicas

    def primary_port(self) -> int:
        """The primary's port as the sentinels report it."""
        for port in self.sentinel_procs:
            s = redis.Redis(port=port, decode_responses=True, socket_timeout=1)
            try:
                addr = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                if addr:
                    return int(addr[1])
            except redis.RedisError:
                continue
            finally:
                s.close()
        raise AssertionError("no sentinel answered")

    def data_client(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(port=port or self.primary_port(), password=PASSWORD, socket_timeout=5)

    def make_promotable(self, port: int) -> None:
        c = self.data_client(port)
        try:
            c.config_set("replica-priority", 100)
        finally:
            c.close()

    def replicas_in_sync(self) -> int:
        try:
            c = self.data_client()
            try:
                info: Any = c.info("replication")
            finally:
                c.close()
        except redis.RedisError:
            return 0
        return sum(
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )

    def describe(self) -> dict[str, Any]:
        """Each node's role, keys and link, and what each sentinel names (for a failing test)."""
        out: dict[str, Any] = {}
        for port in self.nodes:
            c = self.data_client(port)
            try:
                info = c.info("replication")
                out[f"node {port}"] = {
                    "role": info.get("role"),
                    "keys": c.dbsize(),
                    "link": info.get("master_link_status"),
                    "master_port": info.get("master_port"),
                }
            except redis.RedisError as exc:
                out[f"node {port}"] = repr(exc)
            finally:
                c.close()
        for port in self.sentinel_procs:
            s = redis.Redis(port=port, decode_responses=True, socket_timeout=1)
            try:
                out[f"sentinel {port}"] = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            except redis.RedisError as exc:
                out[f"sentinel {port}"] = repr(exc)
            finally:
                s.close()
        return out

    def kill(self, port: int) -> None:
        """SIGKILL a data node (no shutdown, nothing flushed)."""
        proc = self.nodes.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_promotion(self, old: int, timeout_s: float = 60) -> int:
        """Wait until the sentinels name another primary and it answers as one; its port."""

        def promoted() -> int | None:
            try:
                port = self.primary_port()
            except AssertionError:
                return None
            if port == old:
                return None
            c = self.data_client(port)
            try:
                return port if c.info("replication").get("role") == "master" else None
            except redis.RedisError:
                return None
            finally:
                c.close()

        port: int = wait_until(promoted, timeout=timeout_s, interval=0.1)
        return port

    def stop(self) -> None:
        for procs in (self.sentinel_procs, self.nodes):
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            procs.clear()
