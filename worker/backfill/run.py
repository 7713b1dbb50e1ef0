"""``axb backfill FILE``: enqueue a CSV or JSONL file of binds, resumable, never twice.

- Rows use the API's parameter names (``PoolKey``, ``PhoneNoA``, ...) plus an optional
  ``IdempotencyKey``; CSV headers and JSONL keys alike.
- An optional ``Action`` column: ``bind`` (the default, also for an empty cell), ``unbind``
  (needs ``IdempotencyKey``, or ``OutId`` as the key, or ``SubsId`` + ``PoolKey`` + ``SecretNo``)
  or ``extend`` (needs the key and the new ``Expiration``). Other columns of such rows are
  ignored. Within a chunk binds are enqueued before unbinds and extends, so a file may bind a
  key and unbind or extend it in a later row; an unbind never races its bind (see
  :mod:`worker.execution`).
- Invalid rows go to a rejects file (line number, field, vendor code, reason) and the run
  carries on. Phone numbers in it are masked unless ``show_numbers``.
- Rows are enqueued in pipelined chunks. After each chunk, the number of rows done is saved to
  ``FILE.progress``; a rerun resumes there. Rows of a chunk that was cut short are enqueued
  again, and their idempotency keys make that a no-op: nothing is bound twice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.backfill.cells import safe_writer
from worker.backfill.progress import Progress, ProgressBar
from worker.backfill.rows import Row, detect_format, file_fingerprint, iter_rows, read_csv_header
from worker.backfill.wait import wait_all
from worker.errors import InvalidRequestError
from worker.masking import mask_text

if TYPE_CHECKING:
    from worker.producer import PendingBinds, PreparedBinds

KEY_COLUMN = "IdempotencyKey"
ACTION_COLUMN = "Action"
ACTIONS = ("bind", "unbind", "extend")


def op_fields(action: str, data: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The fields an unbind / extend row needs; the key defaults to OutId, as for binds."""
    key = key or (str(data.get("OutId") or "").strip() or None)
    out: dict[str, Any] = {KEY_COLUMN: key} if key else {}
    if action == "extend":
        out["Expiration"] = data.get("Expiration")
    elif data.get("SubsId") or not key:
        # By subscription: only when the row names one (a PoolKey alone is a bind's column).
        out.update({k: data.get(k) for k in ("PoolKey", "SubsId", "SecretNo")})
    return out


class Chunk:
    """Rows read since the chunk before: those to enqueue, and the unreadable ones (rejected
    first when the chunk's results are taken, as the rows of a chunk always were)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.unreadable: list[Row] = []
        self.seen = 0  # rows of the file read up to the end of this chunk
        self.bind_rows: list[Row] = []
        self.binds: PreparedBinds | None = None
        self.pending: PendingBinds | None = None  # the binds' records being created
        self.ops: list[tuple[str, dict[str, Any]]] = []
        self.op_rows: list[Row] = []

    def split(self, prepare: Callable[[list[tuple[dict[str, Any], str | None]]], PreparedBinds]) -> None:
        """Binds (validated here, with ``prepare``) and lifecycle operations, by ``Action``."""
        items: list[tuple[dict[str, Any], str | None]] = []
        for r in self.rows:
            assert r.data is not None
            # Blank text means "not set" (for Action: bind; for the key: derive it).
            data = {k: v for k, v in r.data.items() if not isinstance(v, str) or (v and not v.isspace())}
            if ACTION_COLUMN in data or KEY_COLUMN in data:
                action = str(data.pop(ACTION_COLUMN, "") or "").strip().lower() or "bind"
                key = str(data.pop(KEY_COLUMN, "") or "").strip() or None
            else:
                action, key = "bind", None
            if action == "bind":
                items.append((data, key))
                self.bind_rows.append(r)
                continue
            self.ops.append((action, op_fields(action, data, key)))
            self.op_rows.append(r)
        if items:
            self.binds = prepare(items)


def run_backfill(
    file: str | os.PathLike[str],
    *,
    rejects_path: str | os.PathLike[str] | None = None,
    wait: bool = False,
    wait_timeout_s: float | None = None,
    chunk: int = 1000,
    restart: bool = False,
    fmt: str = "auto",
    progress: bool = False,
    show_numbers: bool = False,
) -> dict[str, Any]:
    from worker.producer import enqueue_lifecycle, prepare_binds, start_binds

    path = Path(file)
    fmt = detect_format(path, fmt)
    rejects = Path(rejects_path) if rejects_path else path.with_name(path.name + ".rejects.csv")
    prog = Progress(path.with_name(path.name + ".progress"), file_fingerprint(path))
    skip = 0 if restart else prog.load()
    started = time.monotonic()
    if fmt == "csv":
        read_csv_header(path)  # a bad header refuses the file before anything is written

    counts: Counter[str] = Counter()
    by_action: Counter[str] = Counter()
    keys: list[str] = []
    reject_mode = "a" if skip else "w"
    bar = ProgressBar(path, enabled=progress)

    # Chunk k's records are created by Redis while this process reads and validates chunk k+1
    # (validation touches no Redis); then chunk k is published and its results (rejects,
    # counts, progress) are taken, and only then does chunk k+1 go to Redis. So a run cut short
    # has recorded at most the chunk after the last saved progress, as before; a rerun makes
    # that chunk a no-op.
    with rejects.open(reject_mode, newline="", encoding="utf-8", errors="backslashreplace") as rfh:
        writer = safe_writer(rfh)  # every cell escaped against spreadsheet formulas
        if reject_mode == "w":
            writer.writerow(["line", "field", "code", "reason", "row"])

        def reject(row: Row, field: str, code: str, reason: str) -> None:
            counts["rejected"] += 1
            shown = row.raw if show_numbers else mask_text(row.raw)
            writer.writerow([row.line, mask_text(field), code, mask_text(reason), shown.strip()[:2000]])

        def finish(ch: Chunk) -> None:
            for row in ch.unreadable:
                reject(row, "", "isv.INVALID_PARAMETERS", row.error)
            if not ch.rows:
                return
            result = ch.pending.finish() if ch.pending is not None else None
            # Within a chunk binds go first: an unbind or extend may name a key bound above it.
            op_result = enqueue_lifecycle(ch.ops) if ch.ops else None
            if result is not None:
                for idx, err in result.rejected:
                    field = err.field if isinstance(err, InvalidRequestError) else KEY_COLUMN
                    code = err.code if isinstance(err, InvalidRequestError) else "axb.IDEMPOTENCY_CONFLICT"
                    reject(ch.bind_rows[idx], field, code, str(err))
                if result.handles:
                    created = sum(1 for h in result.handles if h.created)
                    counts["enqueued"] += created
                    counts["duplicates"] += len(result.handles) - created
                    by_action["bind"] += len(result.handles)
                    if wait:
                        keys.extend(h.key for h in result.handles)
            if op_result is not None:
                for idx, err in op_result.rejected:
                    field = err.field if isinstance(err, InvalidRequestError) else KEY_COLUMN
                    code = err.code if isinstance(err, InvalidRequestError) else "isv.INVALID_PARAMETERS"
                    reject(ch.op_rows[idx], field, code, str(err))
                for oh in op_result.handles:
                    counts["enqueued" if oh.created else "duplicates"] += 1
                    by_action[oh.action] += 1
                    keys.append(oh.key)
            prog.save(ch.seen)
            rfh.flush()
            bar.update(ch.seen)

        inflight: Chunk | None = None

        def submit(ch: Chunk) -> None:
            nonlocal inflight
            if ch.rows:
                ch.split(prepare_binds)  # while Redis creates the records of the chunk before
            if inflight is not None:
                finish(inflight)
                inflight = None
            if ch.binds is not None:
                ch.pending = start_binds(ch.binds)
            inflight = ch

        current = Chunk()
        seen = 0
        try:
            for row in iter_rows(path, fmt):
                seen += 1
                if seen <= skip:
                    continue
                counts["rows"] += 1
                if row.data is None:
                    current.unreadable.append(row)
                    continue
                current.rows.append(row)
                if len(current.rows) >= chunk:
                    current.seen = seen
                    submit(current)
                    current = Chunk()
            if current.rows or current.unreadable:
                current.seen = seen
                submit(current)
            if inflight is not None:
                finish(inflight)
                inflight = None
            prog.save(seen, done=True)
        finally:
            if inflight is not None and inflight.pending is not None:
                inflight.pending.discard()  # cut short: answers unread (no-op once read)
            bar.close()

    elapsed = time.monotonic() - started
    summary: dict[str, Any] = {
        "file": str(path),
        "format": fmt,
        "resumed_after_rows": skip,
        "rows": counts["rows"],
        "enqueued": counts["enqueued"],
        "duplicates": counts["duplicates"],
        "rejected": counts["rejected"],
        "by_action": dict(by_action),
        "rejects_file": str(rejects),
        "enqueue_seconds": round(elapsed, 3),
        "rows_per_second": round(counts["rows"] / elapsed, 1) if elapsed > 0 else None,
    }
    if wait:
        summary.update(wait_all(keys, wait_timeout_s, progress))
    return summary
