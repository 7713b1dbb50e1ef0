"""What an unbind or extend attempt decided to do: succeed without a call, wait, fail, or call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.store import BindRecord
from worker.vendor import VendorResponse

WAITING = "axb.WAITING"  # the code an operation shows while it waits for its bind


@dataclass(frozen=True)
class Done:
    """Nothing (more) to call: the operation succeeded, perhaps as a no-op."""

    outcome: str
    message: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Look again later (the bind is still under way, or another operation holds the binding)."""

    reason: str


@dataclass(frozen=True)
class Fail:
    """The operation cannot succeed: dead-lettered with ``code``."""

    code: str
    message: str


@dataclass(frozen=True)
class Call:
    """Call the vendor; on success the bind record gets ``effect``."""

    vendor_action: str
    pool: str
    send: Callable[[], VendorResponse]
    result: dict[str, Any]
    effect: str = ""  # "unbound" | "extended": what success does to the bind record
    expires_ms: int = 0
    expiration: str = ""


Plan = Done | Wait | Fail | Call


def binding_of(bind: BindRecord) -> dict[str, str]:
    """The binding a succeeded bind made: its pool, SubsId and SecretNo."""
    r = bind.result or {}
    return {"PoolKey": bind.pool, "SubsId": str(r.get("SubsId", "")), "SecretNo": str(r.get("SecretNo", ""))}
