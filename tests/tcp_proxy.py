"""A small TCP proxy in front of the simulator, to cut the vendor off while its ledger lives on.

``down()`` closes the listening port (new connections are refused) and the open connections:
first it stops forwarding requests (a request that arrives now is dropped and its connection
closed: it never reached the vendor), waits a moment for answers already on their way, then
closes everything. ``up()`` listens again on the same port. ``swallow_answers()`` lets requests
reach the vendor but drops their answers and closes the connection: an answer lost after the
vendor applied the request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "up"  # up | cutting | swallow
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.refused_while_down = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> TcpProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.listen(256)
        self._listener = sock
        self.mode = "up"
        threading.Thread(target=self._accept, args=(sock,), daemon=True, name="proxy-accept").start()
        return self

    def down(self, grace_s: float = 0.3) -> None:
        """The vendor goes away: refused from now on; what was on its way is answered first."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.mode = "cutting"
        time.sleep(grace_s)
        self._close_all()

    def swallow_answers(self) -> None:
        self.mode = "swallow"

    def close(self) -> None:
        self.down(grace_s=0)

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.update((client, upstream))
            swallowed = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, True, swallowed), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, False, swallowed), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, request: bool, swallowed: threading.Event
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if request:
                    if self.mode == "cutting":
                        break  # never forwarded: the vendor did not see it
                    if self.mode == "swallow":
                        swallowed.set()
                elif swallowed.is_set():
                    break  # the answer is lost on its way back
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        with self._lock:
            self._conns.discard(src)
            self._conns.discard(dst)
