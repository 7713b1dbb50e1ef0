"""Request signing for the Alibaba Cloud RPC API: v1 (HMAC-SHA1) and v3 (ACS3-HMAC-SHA256).

Both are byte-identical to the official SDKs (``aliyunsdkcore`` for v1, the Tea
``alibabacloud_openapi_util`` for v3); ``tests/test_signing.py`` proves it with the SDKs'
own functions as oracles. The query that goes on the wire is built with the same encoder that
signs it, so the vendor sees exactly what was signed.

A :class:`SignedRequest` is plain data (JSON-serialisable) so that an attempt whose answer was
lost can be re-sent byte for byte, same nonce included: the vendor then answers
``SignatureNonceUsed`` if, and only if, the first copy reached it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

API_VERSION = "2017-05-25"
V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# What ``quote(value, safe="~")`` leaves as it is: a value made only of these (phone numbers, ids,
# parameter names) is its own encoding, and the check costs a tenth of ``quote``.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# A canonical query holds unreserved characters, ``%XY`` escapes, ``=`` and ``&`` only: encoding
# it again (v1's string to sign) only touches these three.
_REENCODE = str.maketrans({"%": "%25", "=": "%3D", "&": "%26"})


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the SDKs do it: space → ``%20``, ``*`` → ``%2A``, ``~`` kept."""
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sorted, encoded ``k=v`` pairs joined by ``&`` (also the exact query sent on the wire).

    Keys are encoded too (the v1 SDK does; the v3 Tea SDK leaves them raw, which is the same for
    every API parameter name, as those are ``[A-Za-z0-9._-]``).
    """
    return "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))


def _as_utc(now: datetime | None) -> datetime:
    """``now`` in UTC: an aware time is converted, a naive one is taken to already be UTC."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def utc_timestamp(now: datetime | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC (an aware ``now`` in another zone is converted first)."""
    return _as_utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")


# SignatureNonce must be unique (the vendor refuses a nonce it has seen: SignatureNonceUsed), not
# secret: the HMAC over it is what an attacker cannot make. 128 bits from a generator seeded from
# os.urandom, reseeded in a forked child (prefork workers must not share a sequence). uuid4()
# read os.urandom for every nonce: a getrandom syscall per bind, which in a worker of many
# threads hands the GIL to another thread (python -m bench.bind_cpu --threads 32).
_nonces = random.Random()
os.register_at_fork(after_in_child=_nonces.seed)


# The fixed bits of a version-4 UUID (RFC 4122 section 4.4), as uuid.UUID(version=4) sets them.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_nonce() -> str:
    """A random version-4 UUID in 32 hex digits, as ``uuid.uuid4().hex`` (the SDKs' nonce)."""
    return f"{_nonces.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


# --- v1 ---------------------------------------------------------------------------------------


def v1_string_to_sign(method: str, params: Mapping[str, str], *, query: str | None = None) -> str:
    """``query``: ``canonical_query(params)`` if the caller has it already."""
    query = canonical_query(params) if query is None else query
    return f"{method}&%2F&{query.translate(_REENCODE)}"


def v1_signature(string_to_sign: str, secret: str) -> str:
    digest = hmac.digest((secret + "&").encode(), string_to_sign.encode(), "sha1")
    return base64.b64encode(digest).decode()


# --- v3 ---------------------------------------------------------------------------------------


def v3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    *,
    query_string: str | None = None,
) -> tuple[str, str]:
    """Return ``(canonical_request, signed_header_names)`` for the headers given (all signed).

    As the Tea SDK does it: names lower-cased and sorted, values stripped, and the values of names
    that differ only in case joined, sorted, with ``,``. ``query_string``: ``canonical_query(query)``
    if the caller has it already.
    """
    lowered: dict[str, list[str]] = {}
    for k, v in headers.items():
        lowered.setdefault(k.lower(), []).append(str(v).strip())
    names = sorted(lowered)
    canonical_headers = "".join(f"{n}:{','.join(sorted(lowered[n]))}\n" for n in names)
    signed = ";".join(names)
    canonical = "\n".join(
        [
            method,
            path or "/",
            canonical_query(query) if query_string is None else query_string,
            canonical_headers,
            signed,
            payload_sha256,
        ]
    )
    return canonical, signed


def v3_string_to_sign(canonical_request: str) -> str:
    return f"{V3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def v3_signature(string_to_sign: str, secret: str) -> str:
    return hmac.digest(secret.encode(), string_to_sign.encode(), "sha256").hex()


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """Everything needed to put one signed call on the wire, again if need be."""

    method: str
    url: str
    headers: dict[str, str]
    nonce: str
    timestamp: str
    action: str
    scheme: Literal["v1", "v3"]
    body: str = ""
    signed_at: float = field(default=0.0)

    def to_json_dict(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies every value (once per call).
        return {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "nonce": self.nonce,
            "timestamp": self.timestamp,
            "action": self.action,
            "scheme": self.scheme,
            "body": self.body,
            "signed_at": self.signed_at,
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> SignedRequest:
        return cls(**dict(data))


def sign_request(
    action: str,
    params: Mapping[str, str],
    *,
    endpoint: str,
    access_key_id: str,
    secret: str,
    scheme: Literal["v1", "v3"] = "v3",
    region_id: str = "cn-hangzhou",
    version: str = API_VERSION,
    method: str = "POST",
    nonce: str | None = None,
    now: datetime | None = None,
) -> SignedRequest:
    """Sign ``action`` with ``params`` and return the request to send to ``endpoint``.

    Send it with ``httpx`` exactly as given: ``client.request(signed.method, signed.url,
    headers=signed.headers, content=signed.body or None)``. ``httpx`` keeps an already encoded
    query byte for byte, but passing ``params=`` (even ``{}``), or a client built with
    ``params=``, *replaces* the URL's query, and merging params re-encodes spaces as ``+``.
    """
    nonce = nonce or new_nonce()
    ts_dt = _as_utc(now)
    timestamp = utc_timestamp(ts_dt)
    host = urlsplit(endpoint).netloc
    base = endpoint.rstrip("/") + "/"
    if scheme == "v1":
        query = dict(params)
        query.update(
            {
                "Action": action,
                "Version": version,
                "Format": "JSON",
                "AccessKeyId": access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
                "SignatureNonce": nonce,
                "Timestamp": timestamp,
                "RegionId": region_id,
            }
        )
        query_string = canonical_query(query)
        signature = v1_signature(v1_string_to_sign(method, query, query=query_string), secret)
        query["Signature"] = signature
        return SignedRequest(
            method=method,
            url=f"{base}?{canonical_query(query)}",
            headers={"host": host, "accept": "application/json"},
            nonce=nonce,
            timestamp=timestamp,
            action=action,
            scheme="v1",
            signed_at=ts_dt.timestamp(),
        )
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": timestamp,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    query_string = canonical_query(params)
    canonical, signed_names = v3_canonical_request(
        method, "/", params, headers, EMPTY_SHA256, query_string=query_string
    )
    signature = v3_signature(v3_string_to_sign(canonical), secret)
    headers["authorization"] = (
        f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_names},Signature={signature}"
    )
    return SignedRequest(
        method=method,
        url=f"{base}?{query_string}" if query_string else base,
        headers=headers,
        nonce=nonce,
        timestamp=timestamp,
        action=action,
        scheme="v3",
        signed_at=ts_dt.timestamp(),
    )
