"""The hold: while calls cannot succeed, the whole cluster stops making them and its keys wait.

One concept, two scopes, each a Redis key every worker reads when a delivery starts (in the
start script) and again in the step that records a call as going out (the begin-attempt
script), so a hold set by one worker stops the next call of every other worker:

- **account** (reason ``account refused``): after an account-level refusal (bad credentials, a
  closed account: :func:`worker.errors.is_account_level`) the account's calls are held for
  ``AXB_ACCOUNT_HOLD_S``; held keys wait on the delay queue until then, and the next calls are
  the probe. The bind that got the refusal is dead-lettered at once (the vendor said no).
- **vendor** (reasons ``vendor unreachable``, ``vendor answering 5xx``): the vendor's side is
  down. Every call outcome is counted cluster-wide per second (answered calls once a second per
  process, failures at once: :meth:`Holds.after_call`); when, over ``AXB_VENDOR_HOLD_WINDOW_S``,
  at least ``AXB_VENDOR_HOLD_MIN_FAILURES`` calls failed and they were at least
  ``AXB_VENDOR_HOLD_FAILURE_RATIO`` of all, the hold opens, recording its reason and start.
  While it is open:

  - a key that starts joins its queue's *held set* and waits on the delay queue (never in a
    sleeping thread) without spending an attempt; one held key per ``AXB_VENDOR_PROBE_EVERY_S``
    comes back soon to probe, the others only after ``AXB_VENDOR_HOLD_RECHECK_S``;
  - one delivery at a time (a Redis lock) calls the vendor: the probe. Any answer about the
    request (success or a vendor code) closes the hold and makes every held key due at once;
    the rate limiter then spreads them out. A failed probe leaves the hold open;
  - a bind whose answer was lost keeps its signed request while it waits, and is proved by
    re-sending it byte for byte after the hold (the bind's "no answer" path:
    worker/execution/bind.py); a request refused at connect was never sent and is signed afresh;
  - a key is dead-lettered by the outage only when its own deadline passes (its Expiration
    minus a minute, or ``deadline=``), as ``axb.DEADLINE_EXCEEDED`` (or ``axb.AMBIGUOUS_OUTCOME``
    if a request of it may have been applied).

The vendor hold has no TTL: it is closed by the first answer a probe gets. With no traffic at all
it stays open until the next key starts, probes and closes it at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker import keys, lua
from worker.errors import VendorError, outage_reason
from worker.settings import Settings

ACCOUNT = "account"
VENDOR = "vendor"
ACCOUNT_REFUSED = "account refused"

# Answered calls are counted locally and sent to Redis at most this often (a failure sends them
# at once, with itself), so the hot path costs no round trip.
FLUSH_EVERY_S = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Hold:
    """A hold in force: ``until_ms`` is when an account hold ends (0 for the vendor hold, which
    ends when a probe gets an answer)."""

    scope: str
    reason: str
    code: str
    message: str
    since_ms: int
    until_ms: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Hold | None:
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        d = json.loads(text)
        return cls(
            scope=str(d.get("scope", "")),
            reason=str(d.get("reason", "")),
            code=str(d.get("code", "")),
            message=str(d.get("message", "")),
            since_ms=int(d.get("since_ms") or 0),
            until_ms=int(d.get("until_ms") or 0),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def describe(self) -> str:
        """``vendor unreachable since 10:02:03 UTC (axb.TRANSPORT_ERROR: …)``: for records and logs."""
        since = time.strftime("%H:%M:%S", time.gmtime(self.since_ms / 1000))
        detail = f"{self.code}: {self.message}" if self.message else self.code
        return f"{self.reason} since {since} UTC ({detail}); calls held cluster-wide"

    def as_dict(self, now: int | None = None) -> dict[str, Any]:
        now = now or now_ms()
        out: dict[str, Any] = {
            "scope": self.scope,
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since_ms / 1000)),
            "since_ms": self.since_ms,
            "held_for_s": round(max(0, now - self.since_ms) / 1000, 1),
        }
        if self.until_ms:
            out["until_ms"] = self.until_ms
        return out


def holds_in_force(client: redis.Redis, account: str) -> list[Hold]:
    """The holds in force for ``account``'s calls: the account's (``account refused``), then the
    vendor's."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.account_hold(account))
    pipe.get(keys.VENDOR_HOLD)
    return [h for h in (Hold.from_json(raw) for raw in pipe.execute()) if h is not None]


class Holds:
    """The hold's state in Redis, for one process (its counts of answered calls are local until
    flushed)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self._note = client.register_script(lua.source("hold_note"))
        self._probe = client.register_script(lua.source("hold_probe"))
        self._park = client.register_script(lua.source("hold_park"))
        self._release = client.register_script(lua.source("hold_release"))
        self._lock = threading.Lock()
        self._answered = 0
        self._flushed_at = time.monotonic()

    # --- reading ------------------------------------------------------------------------------

    def account(self, account: str) -> Hold | None:
        return Hold.from_json(self.r.get(keys.account_hold(account)))

    def vendor(self) -> Hold | None:
        return Hold.from_json(self.r.get(keys.VENDOR_HOLD))

    def current(self, account: str) -> Hold | None:
        """The hold in force for ``account``'s calls: the account's first, then the vendor's."""
        holds = holds_in_force(self.r, account)
        return holds[0] if holds else None

    def held_count(self, queue: str) -> int:
        return int(self.r.zcard(keys.held(queue)))

    # --- the account hold ---------------------------------------------------------------------

    def hold_account(self, account: str, code: str, message: str, seconds: float) -> Hold:
        """Hold every worker's calls for ``account`` for ``seconds`` (after an account-level code)."""
        now = now_ms()
        hold = Hold(ACCOUNT, ACCOUNT_REFUSED, code, message, now, now + int(seconds * 1000))
        self.r.set(keys.account_hold(account), hold.to_json(), px=int(seconds * 1000))
        return hold

    # --- the vendor hold ----------------------------------------------------------------------

    def after_call(self, err: VendorError | None, *, probe: str = "") -> Hold | None:
        """Count one vendor call's outcome. Returns the vendor hold if this call failed for the
        vendor's side (unreachable, 5xx) and the hold is open now (perhaps opened by this call);
        an answer to the probe (``probe``: its token) closes the hold and releases every held
        key, a failed probe frees the probe lock for the next one."""
        reason = outage_reason(err) if err is not None else ""
        if not reason:
            if probe:
                self.close_vendor()
            self._count_answered()
            return None
        with self._lock:
            answered, self._answered = self._answered, 0
            self._flushed_at = time.monotonic()
        s = self.settings
        assert err is not None
        raw = self._note(
            keys=[keys.VENDOR_OUTCOMES, keys.VENDOR_HOLD, keys.VENDOR_PROBE],
            args=[
                answered,
                1,
                s.vendor_hold_window_s,
                s.vendor_hold_min_failures,
                s.vendor_hold_failure_ratio,
                reason,
                err.code,
                (err.vendor_message or str(err))[:300],
                probe,
            ],
        )
        return Hold.from_json(raw)

    def _count_answered(self) -> None:
        with self._lock:
            self._answered += 1
            if time.monotonic() - self._flushed_at < FLUSH_EVERY_S:
                return
            answered, self._answered = self._answered, 0
            self._flushed_at = time.monotonic()
        s = self.settings
        self._note(
            keys=[keys.VENDOR_OUTCOMES, keys.VENDOR_HOLD, keys.VENDOR_PROBE],
            args=[answered, 0, s.vendor_hold_window_s, s.vendor_hold_min_failures, 1, "", "", "", ""],
        )

    def try_probe(self, token: str) -> str:
        """``go`` (the vendor hold is over), ``probe`` (this delivery is the one call let through)
        or ``hold`` (another delivery is probing: wait)."""
        s = self.settings
        lock_ms = int((s.connect_timeout_s + s.read_timeout_s + s.inline_wait_max_s + 1) * 1000)
        res = int(self._probe(keys=[keys.VENDOR_HOLD, keys.VENDOR_PROBE], args=[token, lock_ms]))
        return {2: "go", 1: "probe"}.get(res, "hold")

    def park(self, key: str, queue: str) -> int:
        """Put ``key`` in ``queue``'s held set; returns when it is due on the delay queue (now
        if the vendor hold is over)."""
        s = self.settings
        return int(
            self._park(
                keys=[keys.VENDOR_HOLD, keys.held(queue), keys.VENDOR_NEXT_PROBE, keys.HELD_QUEUES],
                args=[key, int(s.vendor_probe_every_s * 1000), int(s.vendor_hold_recheck_s * 1000), queue],
            )
        )

    def close_vendor(self) -> int:
        """The vendor answered a probe: close the hold and make every held key due now.
        Returns how many keys were released."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(keys.VENDOR_HOLD, keys.VENDOR_PROBE, keys.VENDOR_NEXT_PROBE)
        pipe.smembers(keys.HELD_QUEUES)
        _, queues = pipe.execute()
        released = 0
        for q in sorted(x.decode() if isinstance(x, bytes) else str(x) for x in queues):
            released += int(self._release(keys=[keys.held(q), keys.delayed(q)]))
        return released

    def open_vendor(self, reason: str, code: str, message: str) -> Hold:
        """Open the vendor hold by hand (on-call, tests); a probe's first answer closes it."""
        hold = Hold(VENDOR, reason, code, message, now_ms())
        self.r.set(keys.VENDOR_HOLD, hold.to_json())
        return hold
