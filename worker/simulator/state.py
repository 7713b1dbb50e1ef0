"""The simulator's state: number pools, bindings, nonces, the QPS window, faults and the ledger.

One :class:`Simulator` is shared by the ASGI app (event-loop thread) and tests (main thread);
every read and write of state holds ``self._lock``. A call goes through two steps:

1. :meth:`Simulator.admit` – at receipt: gateway checks, the nonce is recorded, the QPS window
   counts the call, and the faults are drawn. Refusals and injected faults are answered here.
2. :meth:`Simulator.execute` – after the configured latency: the business logic runs.

The app then renders the :class:`Answer` (delaying, truncating or dropping it as drawn).

The pieces live in their own modules: :mod:`.bindings` (bindings, pools, picking an X),
:mod:`.nonces` (nonces seen), :mod:`.answers` (answer bodies, drawing faults) and
:mod:`.actions` (what each action does). :class:`Simulator` holds them under one lock.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.masking import mask_text
from worker.simulator.actions import UPDATE_OPERATIONS, dispatch
from worker.simulator.answers import (
    Admission,
    Answer,
    PostFault,
    draw_post_fault,
    draw_pre_business_fault,
    gateway_answer,
    gateway_body,
    log_call,
    new_request_id,
    throttled_answer,
)
from worker.simulator.bindings import FIRST_SUBS_ID, Binding, BindingBook, BindingStatus, Pool
from worker.simulator.config import Faults, SimulatorConfig
from worker.simulator.gateway import GatewayError, IncomingRequest, authenticate, parse_call
from worker.simulator.nonces import NonceLedger
from worker.simulator.validation import BusinessError

# Names that lived here before the split into bindings / answers / actions stay importable.
__all__ = [
    "FIRST_SUBS_ID",
    "UPDATE_OPERATIONS",
    "Admission",
    "Answer",
    "Binding",
    "BindingStatus",
    "Pool",
    "PostFault",
    "Simulator",
    "new_request_id",
]

log = logging.getLogger("worker.simulator")


class Simulator:
    """Dypls as a stateful fake. Thread-safe; see the module docstring for the call lifecycle."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._subs_ids = itertools.count(FIRST_SUBS_ID)  # never reused, not even across resets
        self._generation = 0
        self.reset(config)

    # --- configuration, clock, faults ----------------------------------------------------------

    def reset(self, config: SimulatorConfig | None = None) -> None:
        """Forget everything (bindings, nonces, ledger) and restore the faults and clock of ``config``.

        Without ``config`` the current configuration is kept. SubsIds are never reused.
        """
        config = config or getattr(self, "config", None) or SimulatorConfig()
        config.validate()
        with self._lock:
            self._generation += 1
            self.config = config
            self._clock = config.clock
            self._faults = config.faults()
            self._rng = random.Random(config.seed)
            self._book = BindingBook(config.pool_numbers(), self.now, self._subs_ids)
            self._nonces = NonceLedger()
            self._window: dict[int, int] = defaultdict(int)  # second → admitted calls (QPS limit)
            self._calls_per_second: dict[int, int] = defaultdict(int)
            self._throttled_per_second: dict[int, int] = defaultdict(int)
            self._ok_binds_per_second: dict[int, int] = defaultdict(int)
            self._calls: deque[dict[str, Any]] = deque(maxlen=config.max_ledger_calls)
            self._seq = itertools.count(1)

    def now(self) -> datetime:
        """Business time (aware): ``config.clock`` / :meth:`set_clock` if set, else the wall clock."""
        clock = self._clock
        moment = clock() if clock is not None else datetime.now(UTC)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def set_clock(self, clock: Callable[[], datetime] | None) -> None:
        with self._lock:
            self._clock = clock

    def advance_clock(self, seconds: float) -> None:
        """Move business time forward by ``seconds`` (on top of whatever clock is in use)."""
        with self._lock:
            base = self._clock
            offset = timedelta(seconds=seconds)

            def advanced() -> datetime:
                return (base() if base is not None else datetime.now(UTC)) + offset

            self._clock = advanced

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults.faults()

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault settings (see :class:`Faults`); the others keep their values."""
        with self._lock:
            self._faults = self._faults.with_changes(changes)
            log.info("faults changed: %s", mask_text(repr(sorted(changes))))
            return self._faults.faults()

    def clear_faults(self) -> Faults:
        """No faults at all (and no QPS limit)."""
        with self._lock:
            self._faults = Faults()
            return self._faults.faults()

    def restore_faults(self) -> Faults:
        """Back to the faults of the start-up configuration."""
        with self._lock:
            self._faults = self.config.faults()
            return self._faults.faults()

    # --- the call lifecycle --------------------------------------------------------------------

    def admit(self, req: IncomingRequest, received_at: float | None = None) -> Admission:
        """Gateway step at receipt: authenticate, record the nonce, count, draw the faults."""
        received_at = time.time() if received_at is None else received_at
        call = parse_call(req)
        request_id = new_request_id()
        with self._lock:
            faults = self._faults
            entry: dict[str, Any] = {
                "seq": next(self._seq),
                "time": received_at,
                "action": call.action,
                "scheme": call.scheme,
                "access_key_id": call.access_key_id,
                "nonce": call.nonce,
                "out_id": call.params.get("OutId"),
                "params": dict(call.params),
                "request_id": request_id,
                "code": None,
                "http_status": None,
                "fault": None,
                "subs_id": None,
                "secret_no": None,
            }
            self._calls.append(entry)
            adm = Admission(entry=entry, call=call, generation=self._generation)
            try:
                authenticate(
                    req,
                    call,
                    credentials=self.config.credentials(),
                    inactive=self.config.inactive_access_key_ids,
                    now_s=received_at,
                    tolerance_s=self.config.timestamp_tolerance_s,
                )
                self._nonces.use(call.access_key_id, call.nonce, received_at, self.config.nonce_ttl_s)
            except GatewayError as err:
                adm.answer = gateway_answer(entry, err.code, err.message, self.config.host_id, err.status)
                return adm
            second = int(received_at)
            self._window[second] += 1
            if faults.qps_limit is not None and self._window[second] > faults.qps_limit:
                self._throttled_per_second[second] += 1
                adm.answer = throttled_answer(entry, faults, self.config.host_id)
                return adm
            self._calls_per_second[second] += 1
            if call.action in faults.fault_actions:
                # Latency is the vendor's processing time: gateway refusals and throttling are fast.
                if faults.latency_ms or faults.jitter_ms:
                    jitter = (
                        self._rng.uniform(-faults.jitter_ms, faults.jitter_ms) if faults.jitter_ms else 0.0
                    )
                    adm.latency_s = max(0.0, faults.latency_ms + jitter) / 1000.0
                host_id = self.config.host_id
                adm.answer, self._faults = draw_pre_business_fault(entry, faults, self._rng, host_id)
                if adm.answer is None:
                    adm.post_fault, adm.slow_s = draw_post_fault(faults, self._rng)
            return adm

    def execute(self, adm: Admission) -> Answer:
        """Business step: run the action and finish the ledger entry."""
        if adm.answer is not None:
            return adm.answer
        entry, call = adm.entry, adm.call
        with self._lock:
            if adm.generation != self._generation:
                # The simulator was reset while this call waited: it never happened.
                gone = gateway_body(entry["request_id"], "ServiceUnavailable", None, self.config.host_id)
                return Answer(503, gone)
            self._book.expire_due()
            try:
                extra = dispatch(self._book, self.config, call, entry)
                code, message = "OK", "OK"
            except BusinessError as err:
                extra, code, message = {}, err.code, err.message
            body: dict[str, Any] = {
                "RequestId": entry["request_id"],
                "Code": code,
                "Message": message,
                **extra,
            }
            post_fault = adm.post_fault
            if post_fault == "missing_dto":
                if call.action == "BindAxb" and code == "OK":
                    body.pop("SecretBindDTO", None)
                else:
                    post_fault = None
            if call.action == "BindAxb" and code == "OK":
                self._ok_binds_per_second[int(entry["time"])] += 1
            entry.update(code=code, http_status=200, fault=post_fault)
            log_call(entry)
            return Answer(200, body, post_fault=post_fault, slow_s=adm.slow_s)

    # --- reading state -------------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """Every call, bindings per OutId, the live binding count, per-second counts, the faults."""
        with self._lock:
            self._book.expire_due()
            return {
                "calls": [{**e, "params": dict(e["params"])} for e in self._calls],
                "bindings_by_out_id": {k: list(v) for k, v in self._book.by_out_id.items()},
                "live_bindings": self._book.live_count(),
                "total_bindings": len(self._book.by_subs_id),
                "calls_per_second": dict(self._calls_per_second),
                "throttled_per_second": dict(self._throttled_per_second),
                "ok_binds_per_second": dict(self._ok_binds_per_second),
                "faults": self._faults.to_json_dict(),
            }

    def calls(self, action: str | None = None, out_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger calls, optionally only those of one action and/or OutId."""
        with self._lock:
            return [
                {**e, "params": dict(e["params"])}
                for e in self._calls
                if (action is None or e["action"] == action) and (out_id is None or e["out_id"] == out_id)
            ]

    def bindings(self, *, live_only: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            self._book.expire_due()
            return [b.to_json_dict() for b in self._book.by_subs_id.values() if b.live or not live_only]

    def binding(self, subs_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._book.expire_due()
            found = self._book.by_subs_id.get(subs_id)
            return found.to_json_dict() if found else None

    def bindings_for(self, out_id: str) -> list[str]:
        """SubsIds bound for ``out_id`` (live or not), in order."""
        with self._lock:
            return list(self._book.by_out_id.get(out_id, []))

    def live_binding_count(self) -> int:
        with self._lock:
            self._book.expire_due()
            return self._book.live_count()
