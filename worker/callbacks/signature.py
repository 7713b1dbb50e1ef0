"""The ``X-Axb-Signature`` header of a completion callback, signed as Stripe signs webhooks.

``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under AXB_CALLBACK_SECRET>``

A receiver recomputes the HMAC over the exact bytes it received, compares in constant time,
and refuses a ``t`` more than a few minutes away from its clock (a replayed old request).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Axb-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, body: bytes, t: int) -> str:
    """The hex HMAC-SHA256 of ``"<t>.<body>"``."""
    return hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, t: int) -> str:
    return f"t={t},v1={signature(secret, body, t)}"


def verify(
    secret: str, body: bytes, header: str, *, now_s: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """True if ``header`` signs ``body`` under ``secret`` with a timestamp within ``tolerance_s``."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs(now_s - t) > tolerance_s:
        return False
    expected = signature(secret, body, t)
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
