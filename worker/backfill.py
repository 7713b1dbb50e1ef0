"""``axb backfill FILE``: enqueue a CSV or JSONL file of binds, resumable, never twice.

- Rows use the API's parameter names (``PoolKey``, ``PhoneNoA``, ...) plus an optional
  ``IdempotencyKey``; CSV headers and JSONL keys alike.
- An optional ``Action`` column: ``bind`` (the default, also for an empty cell), ``unbind``
  (needs ``IdempotencyKey``, or ``OutId`` as the key, or ``SubsId`` + ``PoolKey`` + ``SecretNo``)
  or ``extend`` (needs the key and the new ``Expiration``). Other columns of such rows are
  ignored. Within a chunk binds are enqueued before unbinds and extends, so a file may bind a
  key and unbind or extend it in a later row; an unbind never races its bind (see
  :mod:`worker.lifecycle`).
- Invalid rows go to a rejects file (line number, field, vendor code, reason) and the run
  carries on. Phone numbers in it are masked unless ``show_numbers``.
- Rows are enqueued in pipelined chunks. After each chunk, the number of rows done is saved to
  ``FILE.progress``; a rerun resumes there. Rows of a chunk that was cut short are enqueued
  again, and their idempotency keys make that a no-op: nothing is bound twice.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.csv_cells import safe_writer, unescape_cell
from worker.csv_records import csv_records
from worker.errors import InvalidRequestError
from worker.masking import mask_text

if TYPE_CHECKING:
    from worker.producer import PendingBinds, PreparedBinds

KEY_COLUMN = "IdempotencyKey"
ACTION_COLUMN = "Action"
ACTIONS = ("bind", "unbind", "extend")
MAX_FIELD_CHARS = 4096


@dataclass(slots=True)
class Row:
    line: int
    data: dict[str, Any] | None
    error: str = ""
    raw: str = ""


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    with path.open("rb") as fh:
        head = fh.read(65536)
    return hashlib.sha256(head + f"|{st.st_size}".encode()).hexdigest()[:32]


def _detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def _open_text(path: Path) -> io.TextIOWrapper:
    # Undecodable bytes survive as surrogates, so one bad row is rejected, not the whole file.
    return path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")


_SURROGATES = re.compile("[\udc80-\udcff]")


def _has_surrogates(text: str) -> bool:
    return not text.isascii() and _SURROGATES.search(text) is not None


def iter_rows(path: Path, fmt: str) -> Iterator[Row]:
    """Yield every data row with its line number; problems become ``Row.error``."""
    if fmt == "jsonl":
        with _open_text(path) as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if _has_surrogates(line):
                    yield Row(n, None, "row is not valid UTF-8", line)
                    continue
                try:
                    obj = json.loads(line)
                    if isinstance(obj, dict) and _may_name_twice(line, obj):
                        obj = json.loads(line, object_pairs_hook=_unique_keys)  # the slow, sure way
                except json.JSONDecodeError as exc:
                    yield Row(n, None, f"not a JSON object: {exc.msg}", line)
                    continue
                except _DuplicateKeyError as exc:
                    yield Row(n, None, f"{exc.name} is given twice", line)
                    continue
                if not isinstance(obj, dict):
                    yield Row(n, None, "not a JSON object", line)
                    continue
                yield Row(n, obj, raw=line)
        return
    with _open_text(path) as fh:
        header: list[str] | None = None
        named = True  # no blank header cell: a row's dict is the header zipped with its cells
        for rec in csv_records(fh):
            n = rec.line
            if rec.cells is None:
                # Too long, or unreadable: one reject, and the reader goes on after its last line.
                yield Row(n, None, rec.error, rec.head)
                continue
            record = rec.cells
            if header is None:
                if not any(c.strip() for c in record):
                    continue
                header = [c.strip() for c in record]
                check_header(header, path)
                named = all(header)
                continue
            # Blank: every cell is whitespace (so is their concatenation); the first cell settles
            # it for almost every row.
            if not record or not (record[0].strip() or "".join(record).strip()):
                continue  # blank line
            raw = ",".join(record)
            if _has_surrogates(raw):
                yield Row(n, None, "row is not valid UTF-8", raw)
                continue
            if len(record) != len(header):
                yield Row(n, None, f"row has {len(record)} columns, header has {len(header)}", raw)
                continue
            if len(raw) > MAX_FIELD_CHARS and any(len(c) > MAX_FIELD_CHARS for c in record):
                yield Row(n, None, f"a value is longer than {MAX_FIELD_CHARS} characters", raw)
                continue
            if "'" in raw:  # a file we wrote (safe_writer) reads as the values it was written from
                record = [unescape_cell(c) for c in record]
            if named:
                yield Row(n, dict(zip(header, record, strict=True)), "", raw)
            else:
                yield Row(n, {h: v for h, v in zip(header, record, strict=True) if h}, "", raw)


def read_csv_header(path: Path) -> list[str] | None:
    """The file's header (its first record that is not blank), checked by :func:`check_header`."""
    with _open_text(path) as fh:
        for rec in csv_records(fh):
            if rec.cells is not None and any(c.strip() for c in rec.cells):
                header = [c.strip() for c in rec.cells]
                check_header(header, path)
                return header
    return None


@functools.cache
def _parameter_names() -> dict[str, str]:
    """API name of every BindAxbRequest parameter, by its API name and its field name."""
    from worker.models import BindAxbRequest

    out: dict[str, str] = {}
    for name, info in BindAxbRequest.model_fields.items():
        out[name] = out[info.alias or name] = info.alias or name
    return out


def _column_name(header: str) -> str:
    """The parameter a column sets: ``PhoneNoA`` and ``phone_no_a`` are the same one."""
    return _parameter_names().get(header, header)


def check_header(header: list[str], path: Path) -> None:
    """Refuse a header that names a parameter twice: one of the columns would be dropped silently."""
    seen: dict[str, int] = {}
    for i, cell in enumerate(header, start=1):
        if not cell:
            continue  # a blank header cell names nothing (its column is ignored)
        name = _column_name(cell)
        if name in seen:
            raise InvalidRequestError.single(
                mask_text(name),
                "isv.INVALID_PARAMETERS",
                f"column {seen[name]} and column {i} of the header of {mask_text(path.name)} both set it; "
                "remove one and run the backfill again (nothing was enqueued)",
            )
        seen[name] = i


def _may_name_twice(line: str, obj: dict[str, Any]) -> bool:
    """Could this JSON object have named a parameter twice (``json.loads`` keeps the last)?
    Cheap and never wrong the other way: a key given twice appears twice in the line, unless
    escaped (a backslash) or spelt as its field name (``phone_no_a``)."""
    names = _parameter_names()
    return "\\" in line or any(line.count(f'"{k}"') > 1 or (k[:1].islower() and k in names) for k in obj)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a JSONL row that names a parameter twice is refused, not half-read."""
    out = dict(pairs)
    seen: set[str] = set()
    for k, _v in pairs:
        name = _column_name(k)
        if name in seen:
            raise _DuplicateKeyError(name)
        seen.add(name)
    return out


class _DuplicateKeyError(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


def _op_fields(action: str, data: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The fields an unbind / extend row needs; the key defaults to OutId, as for binds."""
    key = key or (str(data.get("OutId") or "").strip() or None)
    out: dict[str, Any] = {KEY_COLUMN: key} if key else {}
    if action == "extend":
        out["Expiration"] = data.get("Expiration")
    elif data.get("SubsId") or not key:
        # By subscription: only when the row names one (a PoolKey alone is a bind's column).
        out.update({k: data.get(k) for k in ("PoolKey", "SubsId", "SecretNo")})
    return out


class _Progress:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint

    def load(self) -> int:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        if data.get("fingerprint") != self.fingerprint:
            return 0
        return int(data.get("rows_done", 0))

    def save(self, rows_done: int, done: bool = False) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "rows_done": rows_done, "done": done}))
        os.replace(tmp, self.path)


class _Chunk:
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
            self.ops.append((action, _op_fields(action, data, key)))
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
    fmt = _detect_format(path, fmt)
    rejects = Path(rejects_path) if rejects_path else path.with_name(path.name + ".rejects.csv")
    prog = _Progress(path.with_name(path.name + ".progress"), _file_fingerprint(path))
    skip = 0 if restart else prog.load()
    started = time.monotonic()
    if fmt == "csv":
        read_csv_header(path)  # a bad header refuses the file before anything is written

    counts: Counter[str] = Counter()
    by_action: Counter[str] = Counter()
    keys: list[str] = []
    reject_mode = "a" if skip else "w"
    bar = _ProgressBar(path, enabled=progress)

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

        def finish(ch: _Chunk) -> None:
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

        inflight: _Chunk | None = None

        def submit(ch: _Chunk) -> None:
            nonlocal inflight
            if ch.rows:
                ch.split(prepare_binds)  # while Redis creates the records of the chunk before
            if inflight is not None:
                finish(inflight)
                inflight = None
            if ch.binds is not None:
                ch.pending = start_binds(ch.binds)
            inflight = ch

        current = _Chunk()
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
                    current = _Chunk()
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
        summary.update(_wait_all(keys, wait_timeout_s, progress))
    return summary


def _wait_all(key_list: list[str], timeout_s: float | None, progress: bool) -> dict[str, Any]:
    from worker.runtime import get_runtime

    store = get_runtime().store
    remaining = list(dict.fromkeys(key_list))
    total = len(remaining)
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    bar = _ProgressBar(None, enabled=progress, total=total, label="binding")
    try:
        while remaining:
            still: list[str] = []
            for i in range(0, len(remaining), 1000):
                part = remaining[i : i + 1000]
                for key, rec in zip(part, store.get_many(part), strict=True):
                    if rec is None:
                        statuses["missing"] += 1
                    elif rec.terminal:
                        statuses[rec.status] += 1
                        if rec.status == "dead_lettered":
                            codes[rec.code] += 1
                    else:
                        still.append(key)
            remaining = still
            bar.update(total - len(remaining))
            if not remaining:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        bar.close()
    return {
        "succeeded": statuses["succeeded"],
        "dead_lettered": statuses["dead_lettered"],
        "cancelled": statuses["cancelled"],
        "unfinished": len(remaining),
        "dead_letter_codes": dict(codes),
    }


class _ProgressBar:
    """A Rich progress bar on a terminal; nothing otherwise."""

    def __init__(
        self, path: Path | None, *, enabled: bool, total: int | None = None, label: str = "enqueueing"
    ) -> None:
        self._progress: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if total is None and path is not None:
            try:
                with path.open("rb") as fh:
                    total = max(0, sum(1 for _ in fh) - 1)
            except OSError:
                total = None
        self._progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def update(self, done: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
