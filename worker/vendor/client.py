"""The Dypls vendor client: signs, sends, parses, and translates every failure through ONE table.

Outcomes of :meth:`DyplsClient.send`:

- a JSON answer with ``Code == "OK"`` → the parsed body;
- a JSON answer with another code → the typed error :func:`worker.errors.error_for` picks;
- the request never left (connect failure, pool timeout) → :class:`TransportError` with
  ``sent=False``: safe to retry with a fresh nonce;
- the request left and no usable answer came back (read timeout, reset, an HTML 502 page,
  truncated JSON, ``OK`` without a ``SecretBindDTO``) → :class:`AmbiguousVendorError`: the
  vendor may have applied it. The caller re-sends the *same* signed request (same nonce): the
  vendor answers ``SignatureNonceUsed`` exactly when the first copy reached it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from worker.errors import (
    MALFORMED_RESPONSE,
    READ_TIMEOUT,
    TRANSPORT_ERROR,
    AmbiguousVendorError,
    TransportError,
    VendorError,
    error_for,
)
from worker.settings import Settings, get_settings
from worker.vendor.requests import BindAxbRequest, UpdateSubscriptionRequest
from worker.vendor.responses import BindAxbResponse, QuerySubscriptionDetailResponse, VendorResponse
from worker.vendor.sender import ThreadSender
from worker.vendor.signing import SignedRequest, sign_request

# httpx's exceptions -> ours, most specific first (as httpx's own ``_transports/default.py`` maps
# httpcore's). Whether the request left decides everything: before, it is safe to send again
# with a fresh nonce; after, the vendor may have applied it.
NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Turn an httpx failure inside the block into :class:`TransportError` (never sent) or
    :class:`AmbiguousVendorError` (sent, no usable answer), chained to the httpx error."""
    try:
        yield
    except NOT_SENT as exc:
        raise TransportError(TRANSPORT_ERROR, f"not sent: {type(exc).__name__}: {exc}", sent=False) from exc
    except httpx.TimeoutException as exc:
        raise AmbiguousVendorError(READ_TIMEOUT, f"sent, no answer in time: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise AmbiguousVendorError(
            TRANSPORT_ERROR, f"sent, connection lost: {type(exc).__name__}: {exc}"
        ) from exc


def _retry_after_s(response: httpx.Response) -> float | None:
    """``x-acs-retry-after`` is in milliseconds (as the Tea SDK reads it); ``Retry-After`` in seconds."""
    for name, scale in (("x-acs-retry-after", 1000.0), ("retry-after", 1.0)):
        raw = response.headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) / scale)
            except ValueError:
                continue
    return None


class DyplsClient:
    """A pooled, signed, synchronous client for the Dypls RPC API."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._sender = ThreadSender(self.settings, transport)

    # --- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> DyplsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def sign(self, action: str, params: dict[str, str]) -> SignedRequest:
        s = self.settings
        return sign_request(
            action,
            params,
            endpoint=s.endpoint,
            access_key_id=s.access_key_id,
            secret=s.secret(),
            scheme=s.signature,
            region_id=s.region_id,
        )

    def send(self, signed: SignedRequest) -> dict[str, Any]:
        """Put ``signed`` on the wire and return the JSON body of an ``OK`` answer."""
        with map_transport_errors():
            response = self._sender.send(signed.method, signed.url, signed.headers, signed.body or None)
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            body = json.loads(response.content)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            snippet = response.text[:80].replace("\n", " ")
            raise AmbiguousVendorError(
                MALFORMED_RESPONSE,
                f"HTTP {status} with a body that is not JSON: {snippet!r}",
                http_status=status,
            ) from None
        code = str(body.get("Code") or "")
        request_id = str(body.get("RequestId") or "")
        message = str(body.get("Message") or "")
        if code == "OK" and status < 400:
            return body
        if not code:
            raise AmbiguousVendorError(
                MALFORMED_RESPONSE,
                f"HTTP {status} answer without a Code",
                request_id=request_id,
                http_status=status,
            )
        raise error_for(
            code, message, request_id=request_id, http_status=status, retry_after_s=_retry_after_s(response)
        )

    # --- actions -----------------------------------------------------------------------------

    def bind_axb_signed(self, signed: SignedRequest) -> BindAxbResponse:
        """Send an already signed BindAxb (first copy or replay) and parse the answer."""
        body = self.send(signed)
        try:
            parsed = BindAxbResponse.model_validate(body)
        except ValueError:
            parsed = None
        if parsed is None or parsed.secret_bind_dto is None or not parsed.secret_bind_dto.secret_no:
            # The vendor said OK: a binding exists, but we cannot tell which. Ambiguous.
            raise AmbiguousVendorError(
                MALFORMED_RESPONSE,
                "OK without a usable SecretBindDTO",
                request_id=str(body.get("RequestId") or ""),
            )
        return parsed

    def sign_bind_axb(self, request: BindAxbRequest) -> SignedRequest:
        return self.sign("BindAxb", request.to_api_params())

    def bind_axb(self, request: BindAxbRequest) -> BindAxbResponse:
        return self.bind_axb_signed(self.sign_bind_axb(request))

    def unbind_subscription(self, pool_key: str, secret_no: str, subs_id: str) -> VendorResponse:
        """Unbind; ``isv.SUBS_NOT_EXIST`` means already gone and counts as success."""
        params = {"PoolKey": pool_key, "SecretNo": secret_no, "SubsId": subs_id}
        try:
            body = self.send(self.sign("UnbindSubscription", params))
        except VendorError as err:
            if err.code == "isv.SUBS_NOT_EXIST":
                return VendorResponse(RequestId=err.request_id, Code=err.code, Message=err.vendor_message)
            raise
        return VendorResponse.model_validate(body)

    def update_subscription(self, request: UpdateSubscriptionRequest) -> VendorResponse:
        return VendorResponse.model_validate(
            self.send(self.sign("UpdateSubscription", request.to_api_params()))
        )

    def query_subscription_detail(
        self, pool_key: str, subs_id: str, phone_no_x: str
    ) -> QuerySubscriptionDetailResponse:
        params = {"PoolKey": pool_key, "SubsId": subs_id, "PhoneNoX": phone_no_x}
        body = self.send(self.sign("QuerySubscriptionDetail", params))
        return QuerySubscriptionDetailResponse.model_validate(body)
