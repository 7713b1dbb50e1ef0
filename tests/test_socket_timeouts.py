"""Kernel-kept socket timeouts (worker/socket_timeouts.py) on the Redis connections.

A plain ``redis://`` client's connections are blocking sockets with SO_RCVTIMEO / SO_SNDTIMEO
(no poll before each syscall); a Redis that stops answering still fails a command after about
``socket_timeout``, as a retryable redis error, and the client goes on once it answers again.
TLS, Unix and Sentinel connections keep redis-py's own class.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import redis

from worker.connections import redis_client
from worker.redis_client import KernelTimeoutConnection
from worker.settings import Settings

pytestmark = [pytest.mark.timeout(60)]


def test_plain_tcp_connections_keep_their_timeouts_in_the_kernel(settings: Settings) -> None:
    client = redis_client(settings, socket_timeout_s=2.5)
    try:
        assert client.connection_pool.connection_class is KernelTimeoutConnection
        assert client.ping()
        conn = client.connection_pool.get_connection()
        try:
            sock = conn._sock
            assert sock is not None and sock.gettimeout() is None
            sec, usec = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
            assert (sec, usec) == (2, 500_000)
            sec, usec = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16))
            assert (sec, usec) == (2, 500_000)
        finally:
            client.connection_pool.release(conn)
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()


@pytest.mark.parametrize(
    "url",
    ["rediss://127.0.0.1:6380/0", "unix:///tmp/axb-no-such.sock", "sentinel://127.0.0.1:26379/0"],
)
def test_tls_unix_and_sentinel_keep_redis_py_connections(url: str) -> None:
    s = Settings(redis_url=url, access_key_id="ak", access_key_secret="secret")
    client = redis_client(s)
    try:
        assert not issubclass(client.connection_pool.connection_class, KernelTimeoutConnection)
    finally:
        client.close()


def test_a_redis_that_stops_answering_fails_the_command_after_the_timeout() -> None:
    """A server that accepts and never answers: the command (after connecting) fails in about
    socket_timeout as a redis error that the retry policy retries, never hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # read nothing, answer nothing
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    port = listener.getsockname()[1]
    s = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0", access_key_id="ak", access_key_secret="x", redis_retry_s=0
    )
    client = redis_client(s, socket_timeout_s=0.4, connect_timeout_s=1)
    try:
        started = time.monotonic()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            client.get("k")
        waited_s = time.monotonic() - started
        assert 0.35 <= waited_s < 3.0, waited_s
    finally:
        client.close()
        stop.set()
        t.join(5)
        for conn in held:
            conn.close()
        listener.close()
