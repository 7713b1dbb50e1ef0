"""One vendor connection per thread: how :class:`~worker.vendor.client.DyplsClient` puts a signed
request on the wire.

Measured (issue 13): with one ``httpx.Client`` shared by 32 worker threads, most of the worker's
samples waited on httpcore's pool lock, and ``Client.request`` itself (URL and header merging,
cookies, auth and redirect machinery, event hooks) cost more CPU than the HTTP exchange. A signed
vendor request needs none of that, so each thread gets its own transport (no lock convoy), a
:class:`~worker.vendor.wire.WireTransport` (one kept-alive connection, written by hand because
httpcore's pool and h11 cost most of a call's CPU: see that module), and sends an
``httpx.Request`` through the transport's public ``handle_request``, the step ``Client.send``
ends with. Errors are httpx's own, timeouts go in the request's ``timeout`` extension as the
client would put them.

A transport given by the caller (tests: ``httpx.MockTransport``) is used as it is, by every
thread. When the environment names a proxy for the endpoint (``HTTPS_PROXY`` ...), each thread
gets a full ``httpx.Client`` instead, which honours it exactly as before.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request
from urllib.parse import urlsplit

import httpx

from worker.settings import Settings
from worker.vendor.wire import WireTransport

__all__ = ["USER_AGENT", "ThreadSender"]

USER_AGENT = "axb-bind-worker/0.1 (+httpx)"


def _proxied(endpoint: str) -> bool:
    """Whether httpx's ``trust_env`` would route ``endpoint`` through a proxy from the environment."""
    url = endpoint if "://" in endpoint else f"https://{endpoint}"
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class ThreadSender:
    """Sends requests with a per-thread transport (or client); :meth:`close` closes them all."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        s = settings
        self._settings = settings
        self._shared = transport
        self._timeout = httpx.Timeout(
            connect=s.connect_timeout_s,
            read=s.read_timeout_s,
            write=s.read_timeout_s,
            pool=s.connect_timeout_s,
        )
        self._extensions = {"timeout": self._timeout.as_dict()}
        self._limits = httpx.Limits(
            max_connections=s.http_pool_size, max_keepalive_connections=s.http_pool_size
        )
        self._use_client = transport is None and _proxied(s.endpoint)
        self._local = threading.local()
        self._owned: list[httpx.BaseTransport | httpx.Client] = []
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        """httpx's default context (certifi, host names checked), built once for every thread."""
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            return self._ssl_context

    def _own(self, item: httpx.BaseTransport | httpx.Client) -> None:
        with self._lock:
            self._owned.append(item)

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=self._timeout, limits=self._limits, headers={"user-agent": USER_AGENT}
            )
            self._local.client = client
            self._own(client)
        return client

    def _transport(self) -> httpx.BaseTransport:
        if self._shared is not None:
            return self._shared
        transport: httpx.BaseTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = WireTransport(ssl_context=self._tls)
            self._local.transport = transport
            self._own(transport)
        return transport

    def send(self, method: str, url: str, headers: dict[str, str], content: str | None) -> httpx.Response:
        """Send one request; the returned response's body is read and its connection released."""
        if self._use_client:
            return self._client().request(method, url, headers=headers, content=content)
        request = httpx.Request(
            method,
            url,
            headers={"user-agent": USER_AGENT, "accept": "*/*", **headers},
            content=content,
            extensions=self._extensions,
        )
        response = self._transport().handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
        for item in owned:
            item.close()
        self._local = threading.local()
