"""Socket timeouts kept by the kernel (``SO_RCVTIMEO`` / ``SO_SNDTIMEO``) instead of by Python.

A Python socket with ``settimeout(t)`` polls before every ``send`` and ``recv``: two syscalls
per operation instead of one. In a worker of 32 threads each syscall releases the GIL, and at a
vendor that answers at once most of those releases hand it to another thread: a context switch.
Measured with ``python -m bench.bind_cpu --threads 32``: 33 context switches per bind with
Python's timeouts on the vendor and Redis sockets (and ``uuid4`` nonces), 19 with the kernel's.

A socket set up here is blocking (``settimeout(None)``); a send or receive that waits longer
than its timeout fails with ``EAGAIN`` (``BlockingIOError``) instead of ``TimeoutError``. Plain
TCP (and Unix) sockets only: CPython retries a blocking TLS read that the kernel timed out, so
an ``ssl.SSLSocket`` keeps Python's timeouts.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["use_kernel_timeouts"]


def _timeval(timeout_s: float | None) -> bytes:
    """``struct timeval``; None (no timeout) is 0, which the kernel reads as "wait forever"."""
    if timeout_s is None:
        return struct.pack("ll", 0, 0)
    micros = max(1, round(timeout_s * 1_000_000))  # 0 would mean forever, not "at once"
    return struct.pack("ll", micros // 1_000_000, micros % 1_000_000)


def use_kernel_timeouts(sock: socket.socket, read_s: float | None, write_s: float | None) -> None:
    """Make ``sock`` blocking, its receives time out after ``read_s`` and its sends after ``write_s``."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read_s))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(write_s))
    sock.settimeout(None)
