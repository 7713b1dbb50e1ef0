"""The simulator's state: number pools, bindings, nonces, the QPS window, faults and the ledger.

One :class:`Simulator` is shared by the ASGI app (event-loop thread) and tests (main thread);
every read and write of state holds ``self._lock``. A call goes through two steps:

1. :meth:`Simulator.admit` – at receipt: gateway checks, the nonce is recorded, the QPS window
   counts the call, and the faults are drawn. Refusals and injected faults are answered here.
2. :meth:`Simulator.execute` – after the configured latency: the business logic runs.

The app then renders the :class:`Answer` (delaying, truncating or dropping it as drawn).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from worker.masking import mask_text
from worker.simulator.config import Faults, SimulatorConfig
from worker.simulator.gateway import (
    Call,
    GatewayError,
    IncomingRequest,
    authenticate,
    gateway_status,
    is_gateway_code,
    parse_call,
)
from worker.simulator.validation import (
    INVALID_PARAMETERS,
    BusinessError,
    check_bind_axb,
    check_expiration,
    check_phone,
    format_cst,
    optional_bool,
    optional_call_restrict,
    optional_int,
    require,
)

log = logging.getLogger("worker.simulator")

PostFault = Literal["reset", "truncated_json", "missing_dto", "slow"]
BindingStatus = Literal["active", "expired", "unbound"]
UPDATE_OPERATIONS = frozenset(
    {
        "updateNoA",
        "updateNoB",
        "updateExpire",
        "updateAxgGroup",
        "updateCallRestrict",
        "updateCallDisplayType",
        "updateOutId",
        "updateIsRecordingEnabled",
    }
)
FIRST_SUBS_ID = 1000000768393849


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


@dataclass
class Binding:
    """One AXB binding, live or not."""

    subs_id: str
    pool_key: str
    secret_no: str
    phone_no_a: str
    phone_no_b: str
    expires_at: datetime
    created_at: datetime
    request_id: str
    nonce: str
    out_id: str | None = None
    out_order_id: str | None = None
    need_record: bool = False
    call_restrict: str | None = None
    asr_status: bool | None = None
    asr_model_id: str | None = None
    extension: str = ""
    status: BindingStatus = "active"
    ended_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.status == "active"

    def detail_dto(self) -> dict[str, Any]:
        """``SecretBindDetailDTO`` as QuerySubscriptionDetail returns it."""
        dto: dict[str, Any] = {
            "SubsId": self.subs_id,
            "PhoneNoA": self.phone_no_a,
            "PhoneNoB": self.phone_no_b,
            "PhoneNoX": self.secret_no,
            "Status": 1 if self.live else 0,
            "ExpireDate": format_cst(self.expires_at),
            "GmtCreate": format_cst(self.created_at),
            "NeedRecord": self.need_record,
            "Extension": self.extension,
        }
        if self.call_restrict:
            dto["CallRestrict"] = self.call_restrict
        if self.asr_status is not None:
            dto["ASRStatus"] = self.asr_status
        if self.asr_model_id:
            dto["ASRModelId"] = self.asr_model_id
        return dto

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "subs_id": self.subs_id,
            "pool_key": self.pool_key,
            "secret_no": self.secret_no,
            "phone_no_a": self.phone_no_a,
            "phone_no_b": self.phone_no_b,
            "expiration": format_cst(self.expires_at),
            "created_at": format_cst(self.created_at),
            "status": self.status,
            "ended_at": format_cst(self.ended_at) if self.ended_at else None,
            "out_id": self.out_id,
            "out_order_id": self.out_order_id,
            "need_record": self.need_record,
            "call_restrict": self.call_restrict,
            "request_id": self.request_id,
            "nonce": self.nonce,
            "extra": dict(self.extra),
        }


class Pool:
    """X numbers of one pool key, and which A/B numbers each X carries right now."""

    def __init__(self, key: str, numbers: Iterable[str]) -> None:
        self.key = key
        self.numbers = list(dict.fromkeys(numbers))
        self.members = set(self.numbers)
        self.on_x: dict[str, dict[str, str]] = {x: {} for x in self.numbers}  # X → phone → SubsId
        self.load: dict[str, int] = dict.fromkeys(self.numbers, 0)  # X → live pairs

    def fits(self, x: str, a: str, b: str, max_pairs: int) -> bool:
        carried = self.on_x[x]
        return self.load[x] < max_pairs and a not in carried and b not in carried

    def pick(self, a: str, b: str, max_pairs: int) -> str | None:
        """The first X (pool order) with room that carries neither A nor B in any live binding."""
        return next((x for x in self.numbers if self.fits(x, a, b, max_pairs)), None)

    def attach(self, binding: Binding) -> None:
        carried = self.on_x[binding.secret_no]
        carried[binding.phone_no_a] = binding.subs_id
        carried[binding.phone_no_b] = binding.subs_id
        self.load[binding.secret_no] += 1

    def detach(self, binding: Binding) -> None:
        carried = self.on_x[binding.secret_no]
        for phone in (binding.phone_no_a, binding.phone_no_b):
            if carried.get(phone) == binding.subs_id:
                del carried[phone]
        self.load[binding.secret_no] -= 1


@dataclass
class Answer:
    """What to send back. ``body`` is None for the HTML 502 page."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    post_fault: PostFault | None = None  # reset / truncated_json / slow, applied when rendering
    slow_s: float = 0.0
    html: bool = False


@dataclass
class Admission:
    """A call after the gateway: either already answered, or waiting for business logic."""

    entry: dict[str, Any]
    call: Call
    generation: int
    latency_s: float = 0.0
    answer: Answer | None = None
    post_fault: PostFault | None = None
    slow_s: float = 0.0


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
            self._pools = {key: Pool(key, numbers) for key, numbers in config.pool_numbers().items()}
            self._bindings: dict[str, Binding] = {}
            self._expiries: list[tuple[float, int, str]] = []
            self._expiry_seq = itertools.count()
            self._nonces: dict[tuple[str, str], float] = {}
            self._nonce_order: deque[tuple[float, tuple[str, str]]] = deque()
            self._window: dict[int, int] = defaultdict(int)  # second → admitted calls (QPS limit)
            self._calls_per_second: dict[int, int] = defaultdict(int)
            self._throttled_per_second: dict[int, int] = defaultdict(int)
            self._ok_binds_per_second: dict[int, int] = defaultdict(int)
            self._calls: deque[dict[str, Any]] = deque(maxlen=config.max_ledger_calls)
            self._by_out_id: dict[str, list[str]] = defaultdict(list)
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
                self._use_nonce(call, received_at)
            except GatewayError as err:
                adm.answer = self._gateway_answer(entry, err.code, err.message, err.status)
                return adm
            second = int(received_at)
            self._window[second] += 1
            if faults.qps_limit is not None and self._window[second] > faults.qps_limit:
                self._throttled_per_second[second] += 1
                adm.answer = self._throttled(entry, faults)
                return adm
            self._calls_per_second[second] += 1
            if call.action in faults.fault_actions:
                # Latency is the vendor's processing time: gateway refusals and throttling are fast.
                if faults.latency_ms or faults.jitter_ms:
                    jitter = (
                        self._rng.uniform(-faults.jitter_ms, faults.jitter_ms) if faults.jitter_ms else 0.0
                    )
                    adm.latency_s = max(0.0, faults.latency_ms + jitter) / 1000.0
                adm.answer = self._pre_business_fault(entry, faults)
                if adm.answer is None:
                    adm.post_fault, adm.slow_s = self._draw_post_fault(faults)
            return adm

    def execute(self, adm: Admission) -> Answer:
        """Business step: run the action and finish the ledger entry."""
        if adm.answer is not None:
            return adm.answer
        entry, call = adm.entry, adm.call
        with self._lock:
            if adm.generation != self._generation:
                # The simulator was reset while this call waited: it never happened.
                return Answer(503, self._gateway_body(entry["request_id"], "ServiceUnavailable", None))
            self._expire_due()
            try:
                extra = self._dispatch(call, entry)
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
            self._log_call(entry)
            return Answer(200, body, post_fault=post_fault, slow_s=adm.slow_s)

    # --- reading state -------------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """Every call, bindings per OutId, the live binding count, per-second counts, the faults."""
        with self._lock:
            self._expire_due()
            return {
                "calls": [{**e, "params": dict(e["params"])} for e in self._calls],
                "bindings_by_out_id": {k: list(v) for k, v in self._by_out_id.items()},
                "live_bindings": sum(1 for b in self._bindings.values() if b.live),
                "total_bindings": len(self._bindings),
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
            self._expire_due()
            return [b.to_json_dict() for b in self._bindings.values() if b.live or not live_only]

    def binding(self, subs_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._expire_due()
            found = self._bindings.get(subs_id)
            return found.to_json_dict() if found else None

    def bindings_for(self, out_id: str) -> list[str]:
        """SubsIds bound for ``out_id`` (live or not), in order."""
        with self._lock:
            return list(self._by_out_id.get(out_id, []))

    def live_binding_count(self) -> int:
        with self._lock:
            self._expire_due()
            return sum(1 for b in self._bindings.values() if b.live)

    # --- gateway helpers (lock held) ------------------------------------------------------------

    def _use_nonce(self, call: Call, now_s: float) -> None:
        """Refuse a nonce seen within ``nonce_ttl_s``; otherwise remember it, before any processing."""
        order = self._nonce_order
        while order and order[0][0] <= now_s:
            expires, key = order.popleft()
            if self._nonces.get(key) == expires:
                del self._nonces[key]
        key = (call.access_key_id, call.nonce)
        if key in self._nonces:
            raise GatewayError("SignatureNonceUsed")
        expires = now_s + self.config.nonce_ttl_s
        self._nonces[key] = expires
        order.append((expires, key))

    def _gateway_body(self, request_id: str, code: str, message: str | None) -> dict[str, Any]:
        return {
            "RequestId": request_id,
            "HostId": self.config.host_id,
            "Code": code,
            "Message": message or GatewayError(code).message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dyplsapi&requestId={request_id}",
        }

    def _gateway_answer(
        self, entry: dict[str, Any], code: str, message: str | None, status: int | None = None
    ) -> Answer:
        status = status or gateway_status(code)
        entry.update(code=code, http_status=status)
        self._log_call(entry)
        return Answer(status, self._gateway_body(entry["request_id"], code, message))

    def _business_answer(self, entry: dict[str, Any], code: str, message: str) -> Answer:
        entry.update(code=code, http_status=200)
        self._log_call(entry)
        return Answer(200, {"RequestId": entry["request_id"], "Code": code, "Message": message})

    def _throttled(self, entry: dict[str, Any], faults: Faults) -> Answer:
        entry["fault"] = "throttled"
        if faults.throttle_style == "gateway":
            answer = self._gateway_answer(entry, "Throttling.User", None)
            if faults.throttle_retry_after_ms is not None:
                answer.headers["x-acs-retry-after"] = str(faults.throttle_retry_after_ms)
            return answer
        return self._business_answer(entry, "isv.FLOW_LIMIT", "flow limit exceeded")

    def _pre_business_fault(self, entry: dict[str, Any], faults: Faults) -> Answer | None:
        """A forced code, an HTTP 5xx, an HTML 502 or a transient code, drawn in that order."""
        if faults.force_code and (faults.force_count is None or faults.force_count > 0):
            if faults.force_count is not None:
                left = faults.force_count - 1
                self._faults = faults.with_changes(
                    {"force_count": left} if left > 0 else {"force_code": None, "force_count": None}
                )
            entry["fault"] = "force_code"
            return self._coded_answer(entry, faults.force_code)
        rng = self._rng
        if faults.http_5xx_rate and rng.random() < faults.http_5xx_rate:
            entry["fault"] = "http_5xx"
            return self._gateway_answer(entry, rng.choice(("InternalError", "ServiceUnavailable")), None)
        if faults.html_502_rate and rng.random() < faults.html_502_rate:
            entry.update(fault="html_502", code=None, http_status=502)
            self._log_call(entry)
            return Answer(502, None, {"content-type": "text/html"}, html=True)
        if faults.error_rate and rng.random() < faults.error_rate:
            entry["fault"] = "error_rate"
            return self._coded_answer(entry, rng.choice(faults.error_codes))
        return None

    def _coded_answer(self, entry: dict[str, Any], code: str) -> Answer:
        if is_gateway_code(code):
            answer = self._gateway_answer(entry, code, None)
            retry_after_ms = self._faults.throttle_retry_after_ms
            if code.startswith("Throttling") and retry_after_ms is not None:
                answer.headers["x-acs-retry-after"] = str(retry_after_ms)
            return answer
        return self._business_answer(entry, code, f"simulated {code}")

    def _draw_post_fault(self, faults: Faults) -> tuple[PostFault | None, float]:
        rng = self._rng
        if faults.reset_rate and rng.random() < faults.reset_rate:
            return "reset", 0.0
        if faults.truncated_json_rate and rng.random() < faults.truncated_json_rate:
            return "truncated_json", 0.0
        if faults.missing_dto_rate and rng.random() < faults.missing_dto_rate:
            return "missing_dto", 0.0
        if faults.slow_rate and faults.slow_response_ms and rng.random() < faults.slow_rate:
            return "slow", faults.slow_response_ms / 1000.0
        return None, 0.0

    def _log_call(self, entry: dict[str, Any]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s",
                mask_text(
                    f"{entry['action'] or '-'} {entry['http_status']} {entry['code']} "
                    f"out_id={entry['out_id']} fault={entry['fault']} request_id={entry['request_id']}"
                ),
            )

    # --- business logic (lock held) --------------------------------------------------------------

    def _dispatch(self, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
        if call.action == "BindAxb":
            return self._bind_axb(call, entry)
        if call.action == "UnbindSubscription":
            return self._unbind(call.params)
        if call.action == "QuerySubscriptionDetail":
            return self._query(call.params)
        return self._update(call.params)

    def _pool(self, params: dict[str, str]) -> Pool:
        pool = self._pools.get(params["PoolKey"])
        if pool is None:
            raise BusinessError("isv.POOLKEY_NOT_EXISTS", "pool key does not exist")
        return pool

    def _bind_axb(self, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
        params = call.params
        now = self.now()
        expires = check_bind_axb(params, now, self.config.min_expiration_ahead_s)
        pool = self._pool(params)
        a, b, max_pairs = params["PhoneNoA"], params["PhoneNoB"], self.config.max_pairs_per_x
        x = params.get("PhoneNoX") or None
        if x is not None:
            if x not in pool.members:
                raise BusinessError("isv.NO_NOT_EXIST", "PhoneNoX is not in this pool")
            if a in pool.on_x[x] or b in pool.on_x[x]:
                raise BusinessError("isv.BIND_CONFLICT", "PhoneNoA or PhoneNoB is already bound on PhoneNoX")
            if pool.load[x] >= max_pairs:
                raise BusinessError("isv.NO_AVAILABLE_NUMBER", "PhoneNoX carries no more bindings")
        else:
            x = pool.pick(a, b, max_pairs)
            if x is None:
                raise BusinessError("isv.NO_AVAILABLE_NUMBER", "no available number in the pool")
        binding = Binding(
            subs_id=str(next(self._subs_ids)),
            pool_key=pool.key,
            secret_no=x,
            phone_no_a=a,
            phone_no_b=b,
            expires_at=expires,
            created_at=now,
            request_id=entry["request_id"],
            nonce=call.nonce,
            out_id=params.get("OutId") or None,
            out_order_id=params.get("OutOrderId") or None,
            need_record=bool(optional_bool(params, "IsRecordingEnabled")),
            call_restrict=optional_call_restrict(params),
            asr_status=optional_bool(params, "ASRStatus"),
            asr_model_id=params.get("ASRModelId") or None,
        )
        pool.attach(binding)
        self._bindings[binding.subs_id] = binding
        self._schedule_expiry(binding)
        if binding.out_id is not None:
            self._by_out_id[binding.out_id].append(binding.subs_id)
        entry.update(subs_id=binding.subs_id, secret_no=x)
        return {"SecretBindDTO": {"SecretNo": x, "SubsId": binding.subs_id, "Extension": binding.extension}}

    def _live_binding(self, params: dict[str, str], pool: Pool, x_name: str) -> Binding:
        found = self._bindings.get(params["SubsId"])
        x = params.get(x_name)
        if found is None or not found.live or found.pool_key != pool.key or (x and x != found.secret_no):
            raise BusinessError("isv.SUBS_NOT_EXIST", "subscription does not exist")
        return found

    def _unbind(self, params: dict[str, str]) -> dict[str, Any]:
        require(params, "PoolKey", "SecretNo", "SubsId")
        binding = self._live_binding(params, self._pool(params), "SecretNo")
        self._end(binding, "unbound")
        return {}

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        require(params, "PoolKey", "PhoneNoX", "SubsId")
        pool = self._pool(params)
        found = self._bindings.get(params["SubsId"])
        if found is None or found.pool_key != pool.key or found.secret_no != params["PhoneNoX"]:
            raise BusinessError("isv.SUBS_NOT_EXIST", "subscription does not exist")
        return {"SecretBindDetailDTO": found.detail_dto()}

    def _update(self, params: dict[str, str]) -> dict[str, Any]:
        require(params, "PoolKey", "SubsId", "PhoneNoX", "OperateType")
        operation = params["OperateType"]
        if operation not in UPDATE_OPERATIONS:
            raise BusinessError(INVALID_PARAMETERS, "OperateType is not supported")
        pool = self._pool(params)
        binding = self._live_binding(params, pool, "PhoneNoX")
        if operation == "updateExpire":
            require(params, "Expiration")
            binding.expires_at = check_expiration(
                params["Expiration"], self.now(), self.config.min_expiration_ahead_s
            )
            self._schedule_expiry(binding)
        elif operation in ("updateNoA", "updateNoB"):
            self._update_number(pool, binding, "PhoneNoA" if operation == "updateNoA" else "PhoneNoB", params)
        elif operation == "updateCallRestrict":
            binding.call_restrict = optional_call_restrict(params)
        elif operation == "updateIsRecordingEnabled":
            require(params, "IsRecordingEnabled")
            binding.need_record = bool(optional_bool(params, "IsRecordingEnabled"))
        elif operation == "updateOutId":
            binding.out_id = params.get("OutId") or None
        elif operation == "updateCallDisplayType":
            require(params, "CallDisplayType")
            optional_int(params, "CallDisplayType", 1, 1)
            binding.extra["CallDisplayType"] = params["CallDisplayType"]
        else:  # updateAxgGroup
            require(params, "GroupId")
            binding.extra["GroupId"] = params["GroupId"]
        return {}

    def _update_number(self, pool: Pool, binding: Binding, name: str, params: dict[str, str]) -> None:
        require(params, name)
        new = check_phone(params, name)
        other = binding.phone_no_b if name == "PhoneNoA" else binding.phone_no_a
        if new == other:
            raise BusinessError(INVALID_PARAMETERS, "PhoneNoA and PhoneNoB must differ")
        holder = pool.on_x[binding.secret_no].get(new)
        if holder is not None and holder != binding.subs_id:
            raise BusinessError("isv.BIND_CONFLICT", f"{name} is already bound on PhoneNoX")
        pool.detach(binding)
        if name == "PhoneNoA":
            binding.phone_no_a = new
        else:
            binding.phone_no_b = new
        pool.attach(binding)

    def _schedule_expiry(self, binding: Binding) -> None:
        heapq.heappush(
            self._expiries, (binding.expires_at.timestamp(), next(self._expiry_seq), binding.subs_id)
        )

    def _expire_due(self) -> None:
        """Lazily end every live binding whose expiration has come (business clock)."""
        now_ts = self.now().timestamp()
        heap = self._expiries
        while heap and heap[0][0] <= now_ts:
            due, _, subs_id = heapq.heappop(heap)
            binding = self._bindings.get(subs_id)
            if binding is not None and binding.live and binding.expires_at.timestamp() == due:
                self._end(binding, "expired")

    def _end(self, binding: Binding, status: BindingStatus) -> None:
        binding.status = status
        binding.ended_at = self.now()
        self._pools[binding.pool_key].detach(binding)
