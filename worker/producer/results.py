"""What a producer sees of a record: one result type for binds, unbinds and extends.

:class:`RecordResult` holds what every record has (status, vendor code, attempts, times,
callback); :class:`BindResult` adds the SecretBindDTO and the binding's lifecycle,
:class:`LifecycleResult` the outcome of an unbind or extend and the binding it acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.masking import mask_obj
from worker.store import SUCCEEDED, TERMINAL, BindRecord, now_ms
from worker.vendor import SecretBindDTO, format_expiration


@dataclass(frozen=True, kw_only=True)
class RecordResult:
    """The fields of every record (``created_at`` / ``updated_at``: epoch milliseconds)."""

    key: str
    status: str
    code: str = ""
    message: str = ""
    request_id: str = ""
    attempts: int = 0
    task_id: str = ""
    created_at: int = 0
    updated_at: int = 0
    dlq_id: str = ""
    callback_url: str = ""
    callback_numbers: bool = False

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @staticmethod
    def record_fields(rec: BindRecord) -> dict[str, Any]:
        """The constructor arguments every record gives, for ``from_record``."""
        return {
            "key": rec.key,
            "status": rec.status,
            "code": rec.code,
            "message": rec.message,
            "request_id": rec.request_id,
            "attempts": rec.attempts,
            "task_id": rec.task_id,
            "created_at": rec.created_at_ms,
            "updated_at": rec.updated_at_ms,
            "dlq_id": rec.dlq_id,
            "callback_url": rec.callback_url,
            "callback_numbers": rec.callback_numbers,
        }

    def outcome_dict(self) -> dict[str, Any]:
        """The vendor outcome and bookkeeping part of ``as_dict`` (its middle, in this order)."""
        return {
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, kw_only=True)
class BindResult(RecordResult):
    """What a producer sees of a bind: its status and, once succeeded, the SecretBindDTO."""

    dto: SecretBindDTO | None = None
    action: str = "bind"
    expires_at: int = 0
    unbound_at: int | None = None
    cancel_requested: str = ""
    # A first copy of this bind may have left a binding at the vendor: it is in the
    # possible-orphans ledger (worker.orphans) until its Expiration.
    possible_orphan: bool = False
    # The request as stored (vendor names: PoolKey, PhoneNoA, ...): unmasked.
    request: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def state(self) -> str:
        """The binding's lifecycle as an order system sees it: ``bound`` (succeeded and live),
        ``unbound``, ``expired`` (its Expiration passed), or the status (``pending``,
        ``retrying``, ``dead_lettered``, ``cancelled``). For an unbind / extend record:
        ``unbound`` / ``extended`` once succeeded."""
        return lifecycle_state(self.action, self.status, self.unbound_at, self.expires_at)

    @property
    def expiration(self) -> str:
        """The binding's current Expiration (``yyyy-MM-dd HH:mm:ss``, UTC+8; extends move it)."""
        return expiration_text(self.expires_at)

    @classmethod
    def from_record(cls, rec: BindRecord) -> BindResult:
        dto = None
        if rec.result and rec.action == "bind":
            dto = SecretBindDTO.model_validate(rec.result)
        return cls(
            **cls.record_fields(rec),
            dto=dto,
            action=rec.action,
            expires_at=rec.expires_at_ms,
            unbound_at=rec.unbound_at_ms,
            cancel_requested=rec.cancel_requested,
            possible_orphan=rec.possible_orphan,
            request=rec.request,
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "state": self.state,
            "expiration": self.expiration,
            **self.outcome_dict(),
            "SecretBindDTO": self.dto.model_dump(by_alias=True) if self.dto else None,
            "possible_orphan": self.possible_orphan,
        }
        if self.dlq_id:
            out["dlq_id"] = self.dlq_id
        if self.unbound_at:
            out["unbound_at"] = self.unbound_at
        if self.cancel_requested:
            out["unbind"] = self.cancel_requested
        return out if show_numbers else mask_obj(out)


@dataclass(frozen=True, kw_only=True)
class LifecycleResult(RecordResult):
    """What a producer sees of an unbind or extend: status, outcome and the binding it acted on.

    ``outcome`` once succeeded: ``unbound``, ``already_gone`` (the vendor had no such
    subscription), ``cancelled`` (the bind was cancelled before any request could bind),
    ``never_bound`` (the bind was dead-lettered), ``expired``, ``gone`` (no record any more),
    ``already_unbound``; for an extend ``extended`` or ``superseded`` (a later extend wins).
    """

    action: str
    target: str
    outcome: str = ""
    pool_key: str = ""
    subs_id: str = ""
    secret_no: str = ""
    expiration: str = ""

    @property
    def state(self) -> str:
        return lifecycle_state(self.action, self.status, None, 0)

    @classmethod
    def from_record(cls, rec: BindRecord) -> LifecycleResult:
        res = rec.result or {}
        req = rec.request
        return cls(
            **cls.record_fields(rec),
            action=rec.action,
            target=rec.target or str(req.get("IdempotencyKey") or ""),
            outcome=str(res.get("Outcome") or ""),
            pool_key=str(res.get("PoolKey") or req.get("PoolKey") or rec.pool),
            subs_id=str(res.get("SubsId") or req.get("SubsId") or ""),
            secret_no=str(res.get("SecretNo") or req.get("SecretNo") or ""),
            expiration=str(res.get("Expiration") or req.get("Expiration") or ""),
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "action": self.action,
            "target": self.target,
            "status": self.status,
            "state": self.state,
            "outcome": self.outcome,
            **self.outcome_dict(),
            "PoolKey": self.pool_key,
            "SubsId": self.subs_id,
            "SecretNo": self.secret_no,
        }
        if self.action == "extend":
            out["Expiration"] = self.expiration
        if self.dlq_id:
            out["dlq_id"] = self.dlq_id
        return out if show_numbers else mask_obj(out)


def lifecycle_state(action: str, status: str, unbound_at_ms: int | None, expires_at_ms: int) -> str:
    if status != SUCCEEDED:
        return status
    if action == "unbind":
        return "unbound"
    if action == "extend":
        return "extended"
    if unbound_at_ms:
        return "unbound"
    if expires_at_ms and expires_at_ms <= now_ms():
        return "expired"
    return "bound"


def expiration_text(expires_ms: int) -> str:
    if not expires_ms:
        return ""
    return format_expiration(datetime.fromtimestamp(expires_ms / 1000, tz=UTC))
