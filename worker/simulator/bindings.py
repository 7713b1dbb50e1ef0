"""Bindings and number pools: one AXB binding, the X numbers of a pool, and picking an X.

A :class:`BindingBook` holds the pools and bindings of one simulator generation and ends
bindings lazily when their expiration comes (business clock). Callers hold the simulator lock.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from worker.simulator.validation import BusinessError, format_cst

BindingStatus = Literal["active", "expired", "unbound"]
FIRST_SUBS_ID = 1000000768393849


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

    def choose_x(self, wanted: str | None, a: str, b: str, max_pairs: int) -> str:
        """The X for a new A/B pair: ``wanted`` if it can carry the pair, else the first that can.

        Raises :class:`BusinessError` with the vendor's code when no X can.
        """
        if wanted is None:
            x = self.pick(a, b, max_pairs)
            if x is None:
                raise BusinessError("isv.NO_AVAILABLE_NUMBER", "no available number in the pool")
            return x
        if wanted not in self.members:
            raise BusinessError("isv.NO_NOT_EXIST", "PhoneNoX is not in this pool")
        if a in self.on_x[wanted] or b in self.on_x[wanted]:
            raise BusinessError("isv.BIND_CONFLICT", "PhoneNoA or PhoneNoB is already bound on PhoneNoX")
        if self.load[wanted] >= max_pairs:
            raise BusinessError("isv.NO_AVAILABLE_NUMBER", "PhoneNoX carries no more bindings")
        return wanted

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


class BindingBook:
    """The pools and bindings of one simulator generation, with lazy expiry. Not thread-safe.

    ``now`` is the business clock; ``subs_ids`` hands out SubsIds (shared across books, so a
    SubsId is never reused).
    """

    def __init__(
        self,
        pool_numbers: Mapping[str, Iterable[str]],
        now: Callable[[], datetime],
        subs_ids: Iterator[int],
    ) -> None:
        self.now = now
        self.pools = {key: Pool(key, numbers) for key, numbers in pool_numbers.items()}
        self.by_subs_id: dict[str, Binding] = {}
        self.by_out_id: dict[str, list[str]] = defaultdict(list)
        self._subs_ids = subs_ids
        self._expiries: list[tuple[float, int, str]] = []
        self._expiry_seq = itertools.count()

    def new_subs_id(self) -> str:
        return str(next(self._subs_ids))

    def pool(self, params: Mapping[str, str]) -> Pool:
        pool = self.pools.get(params["PoolKey"])
        if pool is None:
            raise BusinessError("isv.POOLKEY_NOT_EXISTS", "pool key does not exist")
        return pool

    def live_binding(self, params: Mapping[str, str], pool: Pool, x_name: str) -> Binding:
        """The live binding ``SubsId`` of ``pool`` (on X ``params[x_name]`` if given), or SUBS_NOT_EXIST."""
        found = self.by_subs_id.get(params["SubsId"])
        x = params.get(x_name)
        if found is None or not found.live or found.pool_key != pool.key or (x and x != found.secret_no):
            raise BusinessError("isv.SUBS_NOT_EXIST", "subscription does not exist")
        return found

    def add(self, pool: Pool, binding: Binding) -> None:
        pool.attach(binding)
        self.by_subs_id[binding.subs_id] = binding
        self.schedule_expiry(binding)
        if binding.out_id is not None:
            self.by_out_id[binding.out_id].append(binding.subs_id)

    def schedule_expiry(self, binding: Binding) -> None:
        heapq.heappush(
            self._expiries, (binding.expires_at.timestamp(), next(self._expiry_seq), binding.subs_id)
        )

    def expire_due(self) -> None:
        """Lazily end every live binding whose expiration has come (business clock)."""
        now_ts = self.now().timestamp()
        heap = self._expiries
        while heap and heap[0][0] <= now_ts:
            due, _, subs_id = heapq.heappop(heap)
            binding = self.by_subs_id.get(subs_id)
            if binding is not None and binding.live and binding.expires_at.timestamp() == due:
                self.end(binding, "expired")

    def end(self, binding: Binding, status: BindingStatus) -> None:
        binding.status = status
        binding.ended_at = self.now()
        self.pools[binding.pool_key].detach(binding)

    def live_count(self) -> int:
        return sum(1 for b in self.by_subs_id.values() if b.live)
