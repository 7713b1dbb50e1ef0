"""Reading a backfill file: every data row of a CSV or JSONL file with its line number.

A row that cannot be read becomes a :class:`Row` with an ``error`` (the run rejects it and goes
on); a header that names a parameter twice refuses the whole file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.backfill.cells import unescape_cell
from worker.backfill.reader import csv_records
from worker.errors import InvalidRequestError
from worker.masking import mask_text

MAX_FIELD_CHARS = 4096


@dataclass(slots=True)
class Row:
    line: int
    data: dict[str, Any] | None
    error: str = ""
    raw: str = ""


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    with path.open("rb") as fh:
        head = fh.read(65536)
    return hashlib.sha256(head + f"|{st.st_size}".encode()).hexdigest()[:32]


def detect_format(path: Path, fmt: str) -> str:
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
    from worker.vendor import BindAxbRequest

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
