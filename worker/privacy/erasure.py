"""``axb forget --phone NUMBER``: a data subject's deletion request.

Every record, history and dead letter holding the number goes:

- a record whose ``request``, signed request or result holds it loses them and its history
  (``forget_record.lua``); its status stays, so its key still answers and is never bound again
  by accident. A bind not yet finished ends ``cancelled`` (code ``axb.FORGOTTEN``) if no request
  of it may be at the vendor; one with a request in flight is reported and left alone (its
  outcome is open: run ``axb forget`` again once it has finished);
- a dead letter whose request holds it is removed, with its history
  (:meth:`worker.deadletters.DeadLetters.drop`).

The number is normalised first (any spelling: spaces, dashes, ``+86``/``0086``, full-width
digits) and matched as a whole digit run in the opened values. One audit record (``op=forget``)
holds counts, the masked number and, with ``AXB_DATA_KEY``, a keyed hash of it (HMAC-SHA-256 under
the first key), never the number itself.

Cost: a full scan that opens every value, since sealed values cannot be searched in Redis: one
``SCAN`` over ``axb:bind:*`` and one ``XRANGE`` walk of the dead letters, 500 keys per pipelined
round trip, one AES-GCM opening per sealed value (about 7 µs). 4-6 s per 100,000 records on
this project's 2-core test machine; it holds no lock, nothing else waits for it.

Idempotency keys are Redis key names and are not scanned: never use a phone number as a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import unicodedata
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from worker import keys, lua
from worker.deadletters import DeadLetters
from worker.errors import InvalidRequestError
from worker.masking import mask_number
from worker.privacy.scan import PAGE, record_pages
from worker.redis_text import as_text
from worker.sealing import DataKeys, unseal
from worker.vendor import MOBILE_NUMBER_ILLEGAL, NOT_A_NUMBER, normalize_phone

FORGOTTEN = "axb.FORGOTTEN"
_FIELDS = ("request", "inflight", "result")


class Forgot(IntEnum):
    """What ``forget_record.lua`` returns for one record."""

    CHANGED_MEANWHILE = -2  # its request changed since it was read: read it again
    IN_FLIGHT = -1  # a request of it may be at the vendor: left alone
    GONE = 0  # no such record (any more)
    ERASED = 1
    ERASED_AND_CANCELLED = 2  # erased, and the unfinished bind ended cancelled


@dataclass
class ForgetReport:
    records: int = 0  # records whose personal data was erased
    cancelled: int = 0  # of those, binds that were still to be sent
    dead_letters: int = 0  # dead letters removed
    in_flight: list[str] = field(default_factory=list)  # keys left alone: a request is out

    @property
    def total(self) -> int:
        return self.records + self.dead_letters


def normalised(number: str) -> str:
    """The number as the validator stores it, from any common spelling; else InvalidRequestError."""
    spelled = unicodedata.normalize("NFKC", number) if isinstance(number, str) else ""
    digits = normalize_phone(re.sub(r"[\s\-().]", "", spelled))
    if digits is None:
        raise InvalidRequestError.single("phone", MOBILE_NUMBER_ILLEGAL, NOT_A_NUMBER)
    return digits


def subject_hash(dk: DataKeys, number: str) -> str:
    """A keyed hash of ``number`` for the audit record ('' without a key)."""
    if not dk.enabled:
        return ""
    raw = dk.keys[0][1]
    return hmac.new(raw, b"axb-forget:" + number.encode(), hashlib.sha256).hexdigest()[:32]


def forget(
    client: Any, number: str, dk: DataKeys, *, queue: str = "axb.bind", user: str = "", host: str = ""
) -> ForgetReport:
    """Erase ``number`` from every record, history and dead letter (see the module docstring)."""
    digits = normalised(number)
    holds = re.compile(rf"(?<![0-9]){re.escape(digits)}(?![0-9])").search
    report = ForgetReport()
    script = client.register_script(lua.source("forget_record"))
    now = int(time.time() * 1000)

    def flush(page: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for rec in page:
            pipe.hmget(rec, "key", *_FIELDS)
        hits: list[tuple[str, str, str]] = []
        for rec, (key, *values) in zip(page, pipe.execute(), strict=True):
            if any(v and holds(unseal(as_text(v))) for v in values):
                hits.append((rec, as_text(key), as_text(values[0])))
        for rec, key, first_read in hits:
            request = first_read
            for _ in range(5):  # re-read when a worker changed the record meanwhile
                res = Forgot(
                    int(
                        script(
                            keys=[rec, keys.bind_history(key), keys.delayed(queue), keys.watch(queue)],
                            args=[now, request, FORGOTTEN],
                        )
                    )
                )
                if res is not Forgot.CHANGED_MEANWHILE:
                    break
                request = as_text(client.hget(rec, "request"))
            if res in (Forgot.ERASED, Forgot.ERASED_AND_CANCELLED):
                report.records += 1
                if res is Forgot.ERASED_AND_CANCELLED:
                    report.cancelled += 1
            elif res is Forgot.IN_FLIGHT:
                report.in_flight.append(key)

    for page in record_pages(client, PAGE):
        flush(page)

    dead = DeadLetters(client)
    matched = [dl for dl in dead.scan(PAGE) if dl.request and holds(_request_text(dl.request))]
    report.dead_letters = dead.drop(matched)
    dead.write_audit(
        "forget",
        matched,
        report.total,
        subject=mask_number(digits),
        subject_hmac=subject_hash(dk, digits),
        records=report.records,
        cancelled=report.cancelled,
        in_flight=len(report.in_flight),
        user=user,
        host=host,
    )
    return report


def _request_text(request: dict[str, Any]) -> str:
    return " ".join(str(v) for v in request.values())
