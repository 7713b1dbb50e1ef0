"""Simulator settings: the start-up configuration and the faults that can change at runtime.

:class:`Faults` holds every knob that tests and the admin endpoint may turn while the simulator
runs. :class:`SimulatorConfig` is the start-up configuration; it *is* a :class:`Faults` (its fault
fields are the initial faults, restored by a reset) plus credentials, pools and limits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

DEFAULT_ACCESS_KEY_ID = "test-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "test-access-key-secret"  # noqa: S105 - a well-known fake for local use
DEFAULT_POOL_KEY = "FC100000001"
DEFAULT_POOL_SIZE = 1000
FIRST_X_NUMBER = 17100000000  # the default pool holds 17100000000, 17100000001, ...
TRANSIENT_CODES = ("isp.SYSTEM_ERROR", "isv.VENDOR_BIND_FAILED", "isp.GATEWAY_ERROR")
ACTIONS = ("BindAxb", "UnbindSubscription", "QuerySubscriptionDetail", "UpdateSubscription")

ThrottleStyle = Literal["flow_limit", "gateway"]
THROTTLE_STYLES = ("flow_limit", "gateway")

_RATES = (
    "error_rate",
    "http_5xx_rate",
    "html_502_rate",
    "slow_rate",
    "reset_rate",
    "truncated_json_rate",
    "missing_dto_rate",
)
_DURATIONS_MS = ("latency_ms", "jitter_ms", "slow_response_ms")


@dataclass
class Faults:
    """What goes wrong, and how often. Rates are fractions in ``[0, 1]`` of the calls concerned.

    Faults hit only the actions in ``fault_actions`` (``BindAxb`` by default); the QPS limit
    counts every action. Faults before business logic (``force_code``, ``http_5xx_rate``,
    ``html_502_rate``, ``error_rate``) leave no binding; faults after it (``slow_rate``,
    ``reset_rate``, ``truncated_json_rate``, ``missing_dto_rate``) answer badly for a call that
    WAS applied.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_codes: tuple[str, ...] = TRANSIENT_CODES
    http_5xx_rate: float = 0.0
    html_502_rate: float = 0.0
    slow_response_ms: float = 0.0
    slow_rate: float = 0.0
    reset_rate: float = 0.0
    truncated_json_rate: float = 0.0
    missing_dto_rate: float = 0.0
    force_code: str | None = None
    force_count: int | None = None  # calls left to force; None = every call while force_code is set
    qps_limit: int | None = None
    throttle_style: ThrottleStyle = "flow_limit"  # isv.FLOW_LIMIT (HTTP 200) or Throttling.User (400)
    throttle_retry_after_ms: int | None = None  # x-acs-retry-after on Throttling.User answers
    fault_actions: tuple[str, ...] = ("BindAxb",)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field out of range."""
        for name in _RATES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
        for name in _DURATIONS_MS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.qps_limit is not None and self.qps_limit < 0:
            raise ValueError("qps_limit must not be negative")
        if self.force_count is not None and self.force_count < 0:
            raise ValueError("force_count must not be negative")
        if self.throttle_style not in THROTTLE_STYLES:
            raise ValueError(f"throttle_style must be one of {THROTTLE_STYLES}")
        if self.error_rate > 0 and not self.error_codes:
            raise ValueError("error_rate needs at least one code in error_codes")
        unknown = set(self.fault_actions) - set(ACTIONS)
        if unknown:
            raise ValueError(f"fault_actions: unknown actions {sorted(unknown)}")

    def faults(self) -> Faults:
        """A plain :class:`Faults` copy of the fault fields (of a config, too)."""
        return Faults(**{name: getattr(self, name) for name in FAULT_FIELDS})

    def with_changes(self, changes: Mapping[str, Any]) -> Faults:
        """A validated copy of the fault fields with ``changes`` applied (unknown names refused)."""
        unknown = set(changes) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        clean = dict(changes)
        for name in ("error_codes", "fault_actions"):
            if name in clean:
                clean[name] = _as_tuple(clean[name])
        updated = replace(self.faults(), **clean)
        updated.validate()
        return updated

    def to_json_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in FAULT_FIELDS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(Faults(**data)).items()}


FAULT_FIELDS = frozenset(f.name for f in fields(Faults))


def _as_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(str(v) for v in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _env(name: str, default: str) -> Callable[[], str]:
    return lambda: os.environ.get(name) or default


def default_pool(size: int, first: int = FIRST_X_NUMBER) -> list[str]:
    """``size`` X numbers ``17100000000``, ``17100000001``, ..."""
    return [str(first + i) for i in range(size)]


@dataclass
class SimulatorConfig(Faults):
    """Start-up configuration. The fault fields inherited from :class:`Faults` are the initial faults.

    Credentials default to ``AXB_ACCESS_KEY_ID`` / ``AXB_ACCESS_KEY_SECRET`` and fall back to the
    well-known test pair. ``pools`` maps pool key → X numbers; without it there is one pool,
    ``FC100000001``, of ``pool_size`` numbers. ``clock`` (an aware ``datetime`` factory) drives the
    business time (expirations); the gateway (timestamps, nonces, QPS seconds) keeps wall time.
    """

    access_key_id: str = field(default_factory=_env("AXB_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID))
    access_key_secret: str = field(default_factory=_env("AXB_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET))
    extra_credentials: dict[str, str] = field(default_factory=dict)  # more keys of the same account
    inactive_access_key_ids: tuple[str, ...] = ()
    seed: int | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    pools: dict[str, list[str]] | None = None
    max_pairs_per_x: int = 200
    timestamp_tolerance_s: float = 900.0
    nonce_ttl_s: float = 900.0
    min_expiration_ahead_s: float = 60.0
    clock: Callable[[], datetime] | None = None
    max_ledger_calls: int = 100_000
    host_id: str = "dyplsapi.aliyuncs.com"

    def validate(self) -> None:
        super().validate()
        if self.pool_size < 0 or self.max_pairs_per_x < 1:
            raise ValueError("pool_size must be >= 0 and max_pairs_per_x >= 1")

    def credentials(self) -> dict[str, str]:
        """AccessKeyId → secret, for every key the simulator accepts."""
        return {**self.extra_credentials, self.access_key_id: self.access_key_secret}

    def pool_numbers(self) -> dict[str, list[str]]:
        if self.pools is not None:
            return {key: list(numbers) for key, numbers in self.pools.items()}
        return {DEFAULT_POOL_KEY: default_pool(self.pool_size)}
