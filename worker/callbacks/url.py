"""Callback URLs: which ones a producer may give, and where a delivery may connect (SSRF guard).

A callback URL must be ``http`` or ``https``, at most :data:`MAX_URL_LENGTH` characters, with a
host and no user name or password. Every address its host resolves to must be public:
loopback, link-local, private, shared (CGNAT), reserved, multicast and unspecified addresses are
refused, so that the service cannot be used to reach internal systems. With
``AXB_CALLBACK_ALLOW_PRIVATE=true`` (tests, on-premises receivers) only multicast and
unspecified addresses stay refused.

The check runs twice: when the producer accepts the URL (:func:`check_callback_url`) and at
every delivery (:func:`resolve_target`), since DNS may change in between. A delivery then
connects to the very address that was checked, not to a second resolution of the name.

A refusal is an :class:`~worker.errors.InvalidRequestError` naming field ``CallbackUrl`` and
code ``axb.CALLBACK_URL_REFUSED``; its message never repeats the URL (a path may carry personal
data), only the host.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from worker import errors
from worker.errors import InvalidRequestError

FIELD = "CallbackUrl"
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (raises OSError when it does not resolve).
Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """Where a delivery connects: ``addresses`` were checked (in the resolver's order); ``host``
    goes in Host and in TLS's SNI and certificate check."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    def pinned_url(self, address: str) -> str:
        """``url`` with its host replaced by a checked address (connect there, nowhere else)."""
        parts = urlsplit(self.url)
        ip = ipaddress.ip_address(address)
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        return parts._replace(netloc=f"{netloc}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def refuse(reason: str) -> InvalidRequestError:
    return InvalidRequestError.single(FIELD, errors.CALLBACK_URL_REFUSED, reason)


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a delivery may not connect to ``address`` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    if allow_private:
        return None
    for name, flag in (
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return f"{name} address"
    if not address.is_global:
        return "a non-public address"
    return None


def _parse(url: object) -> tuple[str, SplitResult, str, int]:
    if not isinstance(url, str):
        raise refuse("must be a string")
    text = url.strip()
    if not text:
        raise refuse("must not be empty")
    if len(text) > MAX_URL_LENGTH:
        raise refuse(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise refuse("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise refuse("is not a valid URL (host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("must have a host")
    return text, parts, host, port or (443 if scheme == "https" else 80)


def resolve_target(url: object, *, allow_private: bool, resolve: Resolver = resolve_host) -> Target:
    """Check ``url`` and its host's addresses; returns where to connect, or raises the refusal.

    Every address the host resolves to must pass (a name with one private address among public
    ones is refused: the resolver could hand out either)."""
    text, parts, host, port = _parse(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            raise refuse(f"host {host!r} does not resolve") from None
        if not addresses:
            raise refuse(f"host {host!r} does not resolve")
    for raw in addresses:
        try:
            addr = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError:
            raise refuse(f"host {host!r} resolves to an address that is not IP") from None
        problem = address_problem(addr, allow_private=allow_private)
        if problem is not None:
            hint = "" if allow_private else " (AXB_CALLBACK_ALLOW_PRIVATE=true allows private targets)"
            raise refuse(f"host {host!r} is {problem}, refused{hint}")
    return Target(
        url=text,
        scheme=parts.scheme.lower(),
        host=host,
        port=port,
        addresses=tuple(a.split("%", 1)[0] for a in addresses),
    )


def check_callback_url(url: object, *, allow_private: bool, resolve: Resolver = resolve_host) -> str:
    """The URL as it will be stored (stripped), or :func:`refuse`'s error."""
    return resolve_target(url, allow_private=allow_private, resolve=resolve).url


class UrlChecker:
    """:func:`check_callback_url` with its verdicts remembered: a batch of many binds with the
    same callback URL resolves its host once."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = resolve_host) -> None:
        self.allow_private = allow_private
        self.resolve = resolve
        self._seen: dict[str, str | InvalidRequestError] = {}

    def __call__(self, url: object) -> str:
        if not isinstance(url, str):
            return check_callback_url(url, allow_private=self.allow_private, resolve=self.resolve)
        verdict = self._seen.get(url)
        if verdict is None:
            try:
                verdict = check_callback_url(url, allow_private=self.allow_private, resolve=self.resolve)
            except InvalidRequestError as err:
                verdict = err
            if len(self._seen) < 10_000:
                self._seen[url] = verdict
        if isinstance(verdict, InvalidRequestError):
            raise refuse(verdict.problems[0].reason)
        return verdict
