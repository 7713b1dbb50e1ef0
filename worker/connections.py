"""Every Redis connection of the project is built here, from ``AXB_REDIS_*``.

Three kinds of ``AXB_REDIS_URL`` are understood, the same way by our own clients (record store,
limiter, delay queue, dead letters, metrics, producers, CLI) and by Celery's broker:

- ``redis://[:password@]host:port/db`` (or ``unix://``): one Redis.
- ``rediss://…``: one Redis over TLS. The CA bundle is ``AXB_REDIS_CA_FILE`` or the URL's
  ``ssl_ca_certs=`` (redis-py's and kombu's query parameter); the certificate is verified.
- ``sentinel://[:password@]host:port;sentinel://host:port/db``: Celery's Sentinel form, one
  part per sentinel, the primary named by ``AXB_REDIS_MASTER_NAME``. The password is the data
  nodes' (``requirepass``); the sentinels' own is ``AXB_REDIS_SENTINEL_PASSWORD``. Our clients
  ask the sentinels for the primary on every new connection (redis-py ``Sentinel.master_for``),
  so after a failover they follow the new one.

Every client retries a failed command on a fresh connection (``ConnectionError``,
``TimeoutError``, and ``READONLY`` from a demoted primary) for about ``AXB_REDIS_RETRY_S``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ReadOnlyError
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.errors import AxbError
from worker.redis_client import AxbRedis, KernelTimeoutConnection, shared_driver_info
from worker.settings import Settings

SENTINEL_PORT = 26379
# Query parameters of a rediss:// URL that are TLS options (redis-py and kombu spell them so).
_SSL_QUERY = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


class RedisUrlError(AxbError, ValueError):
    """``AXB_REDIS_URL`` (or a TLS / Sentinel setting) cannot be used; the message never holds
    the password. (An :class:`AxbError`: ``axb`` prints it as one line, exit code 2.)"""


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``sentinel://`` URL says: the sentinels, the database, the data nodes' login."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    userinfo: str = field(default="", repr=False)  # as written in the URL (percent-encoded)

    @property
    def username(self) -> str | None:
        name = self.userinfo.partition(":")[0] if self.userinfo else ""
        return unquote(name) or None

    @property
    def password(self) -> str | None:
        _, sep, pw = self.userinfo.partition(":")
        return unquote(pw) if sep and pw else None

    def celery_url(self) -> str:
        """The URL for kombu and Celery: the login and database on every part (kombu reads
        them from the first part only)."""
        login = f"{self.userinfo}@" if self.userinfo else ""
        return ";".join(f"sentinel://{login}{host}:{port}/{self.db}" for host, port in self.sentinels)


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``sentinel://[user:password@]host:port;sentinel://host:port/db``.

    The login and the database may be written on any part, once or the same on each."""
    sentinels: list[tuple[str, int]] = []
    userinfos: set[str] = set()
    dbs: set[int] = set()
    for n, raw in enumerate(p.strip() for p in url.split(";")):
        if not raw:
            continue
        parts = urlsplit(raw)
        if parts.scheme.lower() != "sentinel":
            raise RedisUrlError(
                f"AXB_REDIS_URL part {n + 1} must start with sentinel:// (the Sentinel form is "
                "sentinel://host:port;sentinel://host:port/db)"
            )
        if parts.query:
            raise RedisUrlError("AXB_REDIS_URL: a sentinel:// URL takes no query parameters")
        if not parts.hostname:
            raise RedisUrlError(f"AXB_REDIS_URL part {n + 1} names no sentinel host")
        try:
            port = parts.port or SENTINEL_PORT
        except ValueError:
            raise RedisUrlError(f"AXB_REDIS_URL part {n + 1} has a port that is not a number") from None
        sentinels.append((parts.hostname, port))
        if "@" in parts.netloc:
            userinfos.add(parts.netloc.rpartition("@")[0])
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise RedisUrlError(f"AXB_REDIS_URL part {n + 1}: the database must be a number")
            dbs.add(int(path))
    if not sentinels:
        raise RedisUrlError("AXB_REDIS_URL names no sentinel")
    if len(userinfos) > 1:
        raise RedisUrlError("AXB_REDIS_URL: the parts give different passwords; write it once")
    if len(dbs) > 1:
        raise RedisUrlError("AXB_REDIS_URL: the parts give different databases; write it once")
    return SentinelTarget(tuple(sentinels), dbs.pop() if dbs else 0, userinfos.pop() if userinfos else "")


def tls_options(s: Settings) -> dict[str, Any] | None:
    """The TLS options of a ``rediss://`` URL (None for a plain one), as redis-py and kombu's
    ``broker_use_ssl`` take them: the certificate is always verified unless the URL says
    ``ssl_cert_reqs=none``."""
    parts = urlsplit(s.redis_url.strip())
    if parts.scheme.lower() != "rediss":
        if s.redis_ca_file and not is_sentinel(s.redis_url):
            raise RedisUrlError("AXB_REDIS_CA_FILE is set but AXB_REDIS_URL is not a rediss:// URL")
        return None
    query = dict(parse_qsl(parts.query))
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise RedisUrlError("AXB_REDIS_URL: ssl_cert_reqs must be required, optional or none")
    out: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    ca = s.redis_ca_file or query.get("ssl_ca_certs")
    if ca:
        out["ssl_ca_certs"] = ca
    for name in ("ssl_certfile", "ssl_keyfile"):
        if query.get(name):
            out[name] = query[name]
    return out


def strip_tls_query(url: str) -> str:
    """A ``rediss://`` URL without its TLS query parameters (Celery gets them as settings)."""
    parts = urlsplit(url.strip())
    rest = [(k, v) for k, v in parse_qsl(parts.query) if k not in _SSL_QUERY]
    return urlunsplit(parts._replace(query=urlencode(rest)))


def retry_policy(s: Settings, *, retry_class: Any = Retry) -> Any:
    """Retry a command on a new connection for about ``AXB_REDIS_RETRY_S``: backoff 0.1, 0.2,
    0.4, 0.8 s, then every second (a refused connection fails at once, so the sleeps are the
    time). ``retry_class``: redis-py's sync ``Retry`` or its asyncio twin."""
    retries = 0 if s.redis_retry_s <= 0 else int(s.redis_retry_s) + 3
    return retry_class(
        ExponentialBackoff(cap=1.0, base=0.05),
        retries,
        supported_errors=(redis.ConnectionError, redis.TimeoutError, ReadOnlyError),
    )


def wait_replicas(s: Settings) -> int:
    """``AXB_REDIS_WAIT_REPLICAS``, or 1 with a Sentinel URL when it is not set."""
    if s.redis_wait_replicas is not None:
        return s.redis_wait_replicas
    return 1 if is_sentinel(s.redis_url) else 0


def redis_client(
    s: Settings,
    *,
    decode_responses: bool = False,
    max_connections: int | None = None,
    socket_timeout_s: float = 10,
    connect_timeout_s: float = 5,
) -> redis.Redis:
    """A client of the primary named by the settings (see the module's docstring)."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry": retry_policy(s),
        "decode_responses": decode_responses,
        "driver_info": shared_driver_info(),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    if urlsplit(s.redis_url.strip()).scheme.lower() == "redis":
        options["connection_class"] = KernelTimeoutConnection  # plain TCP only: not TLS, Unix, Sentinel
    sentinel_timeout_s = min(socket_timeout_s, 2.0)
    client: redis.Redis = _connect(
        s, options, sentinel_class=Sentinel, client_class=AxbRedis, sentinel_timeout_s=sentinel_timeout_s
    )
    return client


def _connect(
    s: Settings, options: dict[str, Any], *, sentinel_class: Any, client_class: Any, sentinel_timeout_s: float
) -> Any:
    """The one place a client is made from ``AXB_REDIS_URL``, sync or asyncio (the classes
    differ, the rules do not): a Sentinel URL asks the sentinels for the primary; ``redis://``,
    ``rediss://`` (with its TLS options) and ``unix://`` connect directly."""
    if is_sentinel(s.redis_url):
        if s.redis_ca_file:
            raise RedisUrlError("AXB_REDIS_CA_FILE: TLS through Sentinel is not supported")
        target = parse_sentinel_url(s.redis_url)
        sentinel = sentinel_class(
            list(target.sentinels),
            sentinel_kwargs=sentinel_kwargs(s, socket_timeout_s=sentinel_timeout_s),
            db=target.db,
            username=target.username,
            password=target.password,
        )
        return sentinel.master_for(s.redis_master_name, redis_class=client_class, **options)
    tls = tls_options(s)
    try:
        url = strip_tls_query(s.redis_url) if tls else s.redis_url
        return client_class.from_url(url, **options, **(tls or {}))
    except ValueError:
        scheme = urlsplit(s.redis_url.strip()).scheme or "none"
        raise RedisUrlError(
            f"AXB_REDIS_URL must start with redis://, rediss://, unix:// or sentinel:// (not {scheme}://)"
        ) from None


def async_redis_client(s: Settings, *, max_connections: int | None = None) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client` for ``axb api`` (``?wait``'s pub/sub): the same
    URL kinds, login, TLS and retries. No socket timeout: a pub/sub read blocks as long as the
    longest wait, and health checks find a dead connection instead."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry": retry_policy(s, retry_class=AsyncRetry),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    client: aioredis.Redis = _connect(
        s, options, sentinel_class=AsyncSentinel, client_class=aioredis.Redis, sentinel_timeout_s=2.0
    )
    return client


def sentinel_kwargs(s: Settings, *, socket_timeout_s: float = 2.0) -> dict[str, Any]:
    """How to talk to the sentinels themselves (short timeouts: another sentinel is asked)."""
    out: dict[str, Any] = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s}
    if s.redis_sentinel_password is not None:
        out["password"] = s.redis_sentinel_password.get_secret_value()
    return out


def celery_connection_config(s: Settings) -> dict[str, Any]:
    """The broker and result-backend part of the Celery configuration (worker/celery_app.py
    adds the rest of the transport options)."""
    if is_sentinel(s.redis_url):
        if s.redis_ca_file:
            raise RedisUrlError("AXB_REDIS_CA_FILE: TLS through Sentinel is not supported")
        url = parse_sentinel_url(s.redis_url).celery_url()
        sentinel_opts = {"master_name": s.redis_master_name, "sentinel_kwargs": sentinel_kwargs(s)}
        return {
            "broker_url": url,
            "result_backend": url,
            "transport_options": sentinel_opts,
            "result_backend_transport_options": sentinel_opts,
        }
    tls = tls_options(s)
    if tls is None:
        return {"broker_url": s.redis_url, "result_backend": s.redis_url}
    url = strip_tls_query(s.redis_url)
    return {"broker_url": url, "result_backend": url, "broker_use_ssl": tls, "redis_backend_use_ssl": tls}
