"""Errors, and the ONE table that decides how every vendor outcome is handled.

Exception tree::

    AxbError
    ├── InvalidRequestError          bad input caught before any call (names field + vendor code)
    ├── IdempotencyConflictError     a key reused for a different request
    ├── RedisFullError               Redis refused a write: maxmemory reached (noeviction)
    └── VendorError                  the vendor (or the way to it) said no
        ├── RetryableVendorError     back off and try again within the bind's deadline
        │   ├── ThrottledError       flow control: slow the whole cluster down
        │   ├── NoNumberError        pool exhausted: long backoff, capacity alert
        │   └── TransportError       connect failures, 5xx, non-JSON bodies (request not applied)
        ├── AmbiguousVendorError     the request may have been applied (read timeout, nonce used)
        └── TerminalVendorError      dead-letter at once, no retry
            └── AccountError         account-level: page on-call

Foreign errors (httpx) are translated into these at exactly one place, the vendor client,
through :func:`classify`. Every message is masked: no phone number ever appears in ``str(err)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import redis.exceptions

from worker.masking import mask_text


class Handling(enum.StrEnum):
    RETRYABLE = "retryable"
    THROTTLED = "throttled"
    NO_NUMBER = "no_number"
    CLOCK = "clock"  # retry once with a fresh timestamp, then terminal
    AMBIGUOUS = "ambiguous"
    TERMINAL = "terminal"
    ACCOUNT = "account"  # terminal, and page on-call


# Every code in DYPLS.md, and how to treat it. Everything else asks this table.
CODE_TABLE: dict[str, Handling] = {
    "isv.MOBILE_NUMBER_ILLEGAL": Handling.TERMINAL,
    "isv.EXPIRE_DATE_ILLEGAL": Handling.TERMINAL,
    "isv.ILLEGAL_ARGUMENT": Handling.TERMINAL,
    "isv.NO_NOT_EXIST": Handling.TERMINAL,
    "isv.NO_USED_BY_OTHERS": Handling.TERMINAL,
    "isv.FORBIDDEN_ACTION": Handling.TERMINAL,
    "isv.PARTNER_NOT_EXIST": Handling.TERMINAL,
    "isv.PARTNER_IS_CLOSED": Handling.TERMINAL,
    "isv.INVALID_PARAMETERS": Handling.TERMINAL,
    "isv.POOLKEY_NOT_EXISTS": Handling.TERMINAL,
    "isv.BIND_CONFLICT": Handling.TERMINAL,
    "isv.SUBS_NOT_EXIST": Handling.TERMINAL,  # an unbind takes it as "already gone"
    "isv.ACCOUNT_NOT_EXISTS": Handling.ACCOUNT,
    "isv.ACCOUNT_ABNORMAL": Handling.ACCOUNT,
    "isv.OUT_OF_SERVICE": Handling.ACCOUNT,
    "isv.PRODUCT_UN_SUBSCRIPT": Handling.ACCOUNT,
    "isv.PRODUCT_UNSUBSCRIBE": Handling.ACCOUNT,
    "isp.RAM_PERMISSION_DENY": Handling.ACCOUNT,
    "SignatureDoesNotMatch": Handling.ACCOUNT,
    "InvalidAccessKeyId.NotFound": Handling.ACCOUNT,
    "InvalidAccessKeyId.Inactive": Handling.ACCOUNT,
    "isv.FLOW_LIMIT": Handling.THROTTLED,
    "isp.SYSTEM_ERROR": Handling.RETRYABLE,
    "isp.UNKNOWN_ERR_CODE": Handling.RETRYABLE,
    "isp.DAO_EXCEPTION": Handling.RETRYABLE,
    "isp.VENDOR_UNAVAILABLE": Handling.RETRYABLE,
    "isv.VENDOR_BIND_FAILED": Handling.RETRYABLE,
    "isp.GATEWAY_ERROR": Handling.RETRYABLE,
    "InternalError": Handling.RETRYABLE,
    "ServiceUnavailable": Handling.RETRYABLE,
    "isv.NO_AVAILABLE_NUMBER": Handling.NO_NUMBER,
    "SignatureNonceUsed": Handling.AMBIGUOUS,
    "InvalidTimeStamp.Expired": Handling.CLOCK,
}

# Codes this service gives itself (never sent by the vendor).
TRANSPORT_ERROR = "axb.TRANSPORT_ERROR"  # connect failure, reset before sending, non-JSON body
READ_TIMEOUT = "axb.READ_TIMEOUT"  # request sent, no answer in time: ambiguous
AMBIGUOUS_OUTCOME = "axb.AMBIGUOUS_OUTCOME"  # could not prove the request was not applied
DEADLINE_EXCEEDED = "axb.DEADLINE_EXCEEDED"
MALFORMED_RESPONSE = "axb.MALFORMED_RESPONSE"
MALFORMED_MESSAGE = "axb.MALFORMED_MESSAGE"
POISON_MESSAGE = "axb.POISON_MESSAGE"
INVALID_REQUEST = "axb.INVALID_REQUEST"
CANCELLED = "axb.CANCELLED"  # a bind cancelled by an unbind before any request could bind
UNKNOWN_KEY = "axb.UNKNOWN_KEY"  # an unbind / extend of a key with no bind record
NOT_BOUND = "axb.NOT_BOUND"  # an extend of a binding that is not live (unbound, cancelled, expired, failed)
CALLBACK_URL_REFUSED = "axb.CALLBACK_URL_REFUSED"  # not http(s), too long, or a private target
CALLBACK_FAILED = "axb.CALLBACK_FAILED"  # a completion callback undelivered for AXB_CALLBACK_MAX_AGE_S

ACCOUNT_LEVEL_PREFIXES = ("isv.ACCOUNT_", "isv.OUT_OF_SERVICE", "isv.PRODUCT_", "InvalidAccessKeyId.")


def classify(code: str, http_status: int | None = None) -> Handling:
    """How to handle ``code``; unknown codes are terminal unless the HTTP status is 5xx."""
    if code in CODE_TABLE:
        return CODE_TABLE[code]
    if code.startswith("Throttling"):
        return Handling.THROTTLED
    if code.startswith(ACCOUNT_LEVEL_PREFIXES):
        return Handling.ACCOUNT
    if http_status is not None and http_status >= 500:
        return Handling.RETRYABLE
    return Handling.TERMINAL


def is_account_level(code: str) -> bool:
    return classify(code) is Handling.ACCOUNT


# Why a call failed when it says nothing about the request itself (the vendor's side is down):
# these open the vendor hold (worker/execution/hold.py) and never use up AXB_MAX_ATTEMPTS.
VENDOR_UNREACHABLE = "vendor unreachable"
VENDOR_5XX = "vendor answering 5xx"


def outage_reason(err: VendorError) -> str:
    """``vendor unreachable`` (refused, reset, connect or read timeout), ``vendor answering 5xx``
    (an HTTP 5xx that is not flow control), or ``""``: the vendor answered about this request."""
    if err.handling is Handling.THROTTLED or err.code == "SignatureNonceUsed":
        return ""
    if err.code in (TRANSPORT_ERROR, READ_TIMEOUT):
        return VENDOR_UNREACHABLE
    if err.http_status is not None and err.http_status >= 500:
        return VENDOR_5XX
    return ""


class AxbError(Exception):
    """Base of every error this service raises. ``str()`` is always masked."""

    def __init__(self, message: str) -> None:
        self.message = mask_text(message)
        super().__init__(self.message)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} ({self.code})"


class InvalidRequestError(AxbError, ValueError):
    """A request the vendor would reject; each problem names the field and the vendor code."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @classmethod
    def single(cls, field: str, code: str, reason: str) -> InvalidRequestError:
        return cls([FieldProblem(field, code, reason)])

    @property
    def code(self) -> str:
        return self.problems[0].code if self.problems else INVALID_REQUEST

    @property
    def field(self) -> str:
        return self.problems[0].field if self.problems else ""


class RedisFullError(AxbError, redis.exceptions.OutOfMemoryError):
    """Redis refused a write because it is full (``maxmemory`` reached under ``noeviction``).

    Raised instead of redis-py's ``OutOfMemoryError`` by every Redis client of this service
    (translated in one place, :mod:`worker.redis_client`); it is still a ``redis.RedisError``.
    The refused step wrote nothing: free memory and run the same command again; idempotency
    keys (and a backfill's progress file) make it resume where it stopped."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(
            "Redis is full (maxmemory reached, policy noeviction): nothing was written by the refused"
            " step. Free memory (axb dlq purge, or raise maxmemory), then run the same command again:"
            " it resumes where it stopped"
        )


class IdempotencyConflictError(AxbError):
    """The idempotency key is already used by a different request."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} is already used by a different request; use a new key"
            " or replay the existing one"
        )


class VendorError(AxbError):
    handling: Handling = Handling.TERMINAL

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        request_id: str = "",
        http_status: int | None = None,
        retry_after_s: float | None = None,
        sent: bool = True,
    ) -> None:
        self.code = code
        self.vendor_message = mask_text(message)
        self.request_id = request_id
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.sent = sent
        text = f"{code}: {message}" if message else code
        if request_id:
            text += f" (RequestId {request_id})"
        if http_status is not None:
            text += f" [HTTP {http_status}]"
        super().__init__(text)


class RetryableVendorError(VendorError):
    handling = Handling.RETRYABLE


class ThrottledError(RetryableVendorError):
    handling = Handling.THROTTLED


class NoNumberError(RetryableVendorError):
    handling = Handling.NO_NUMBER


class ClockSkewError(RetryableVendorError):
    handling = Handling.CLOCK


class TransportError(RetryableVendorError):
    """The request did not reach the vendor, or its answer was unusable (5xx, not JSON)."""


class AmbiguousVendorError(VendorError):
    handling = Handling.AMBIGUOUS


class TerminalVendorError(VendorError):
    handling = Handling.TERMINAL


class AccountError(TerminalVendorError):
    handling = Handling.ACCOUNT


_BY_HANDLING: dict[Handling, type[VendorError]] = {
    Handling.RETRYABLE: RetryableVendorError,
    Handling.THROTTLED: ThrottledError,
    Handling.NO_NUMBER: NoNumberError,
    Handling.CLOCK: ClockSkewError,
    Handling.AMBIGUOUS: AmbiguousVendorError,
    Handling.TERMINAL: TerminalVendorError,
    Handling.ACCOUNT: AccountError,
}


def error_for(
    code: str,
    message: str = "",
    *,
    request_id: str = "",
    http_status: int | None = None,
    retry_after_s: float | None = None,
) -> VendorError:
    """Build the typed error for a vendor ``code`` by asking :data:`CODE_TABLE`."""
    cls = _BY_HANDLING[classify(code, http_status)]
    return cls(code, message, request_id=request_id, http_status=http_status, retry_after_s=retry_after_s)
