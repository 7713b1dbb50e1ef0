"""Signature nonces the gateway has seen: a nonce is refused while remembered (``nonce_ttl_s``)."""

from __future__ import annotations

from collections import deque

from worker.simulator.gateway import GatewayError


class NonceLedger:
    """Nonces per AccessKeyId, forgotten ``ttl_s`` after their use. Not thread-safe."""

    def __init__(self) -> None:
        self._expiry_s: dict[tuple[str, str], float] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def use(self, access_key_id: str, nonce: str, now_s: float, ttl_s: float) -> None:
        """Refuse a nonce seen within ``ttl_s`` (SignatureNonceUsed); otherwise remember it."""
        order = self._order
        while order and order[0][0] <= now_s:
            expires, key = order.popleft()
            if self._expiry_s.get(key) == expires:
                del self._expiry_s[key]
        key = (access_key_id, nonce)
        if key in self._expiry_s:
            raise GatewayError("SignatureNonceUsed")
        expires = now_s + ttl_s
        self._expiry_s[key] = expires
        order.append((expires, key))
