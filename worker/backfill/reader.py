"""Reading a CSV file record by record, where one bad record costs one record and no more.

:func:`csv.reader` alone is fragile on hostile files: a quoted field beyond its field limit
raises once, and the reader then starts afresh on the *next line*, inside the quoted field, so a
1,000,000-character field spread over lines became hundreds of bogus records and swallowed the
good row after it. Here the lines go to the reader through :class:`_Lines`, which follows the
reader's quoting (the default dialect: a ``"`` opens a quoted field only at the start of a field,
``""`` inside one is a quote) and so always knows where the current record ends:

- a record longer than ``max_row_chars`` is never handed to the reader: it is skipped to its
  end and comes out as ONE refused :class:`CsvRecord`;
- any other reader error (a NUL byte) refuses the record and skips the rest of it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Below csv's own field limit (131,072), so the reader never sees a field it refuses.
MAX_ROW_CHARS = 65_536
_HEAD_CHARS = 200


@dataclass(slots=True)
class CsvRecord:
    """One record: its cells, or ``None`` with the reason it was refused."""

    first_line: int
    line: int  # its last physical line (what csv.reader reports); a refused record: its first
    cells: list[str] | None
    error: str = ""
    head: str = ""  # a refused record's first characters, for a human to find it


def ends_in_quotes(text: str, in_quotes: bool) -> bool:
    """Is the reader inside a quoted field after ``text`` (a line), given where it started?"""
    if not in_quotes and '"' not in text:
        return False
    pos = 0
    if not in_quotes and text.startswith('"'):  # a line that starts a record starts a field
        in_quotes, pos = True, 1
    while True:
        if in_quotes:
            q = text.find('"', pos)
            if q < 0:
                return True
            if text.startswith('"', q + 1):  # "" is a quote inside the field
                pos = q + 2
                continue
            in_quotes, pos = False, q + 1
        q = text.find(',"', pos)  # a quote opens a field only right after a delimiter
        if q < 0:
            return False
        in_quotes, pos = True, q + 2


class _Lines:
    """The file's lines for csv.reader, each record whole or not at all (see the module doc)."""

    def __init__(self, lines: Iterator[str], max_row_chars: int) -> None:
        self._lines = lines
        self._max = max_row_chars
        self.line = 0  # physical lines read
        self.start = 0  # the first line of the record being read
        self.in_quotes = False  # at the end of the last line read
        self._chars = 0  # characters of the current record so far
        self._head = ""  # the current record's first characters
        self._given = False  # some of the current record's lines went to the reader
        self.cut = False  # the reader's last record is a stub of a refused one: drop it
        self.refused: list[CsvRecord] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        while True:
            text = next(self._lines)  # StopIteration ends the reader
            self.line += 1
            if not self.in_quotes and '"' not in text and len(text) <= self._max:
                # The common line: a whole record, no quotes. Nothing to follow.
                self.start, self._chars, self._given = self.line, 0, True
                return text
            if not self.in_quotes:
                self.start, self._chars, self._given = self.line, 0, False
                self._head = text[:_HEAD_CHARS]
            self._chars += len(text)
            self.in_quotes = ends_in_quotes(text, self.in_quotes)
            if self._chars <= self._max:
                self._given = True
                return text
            self._skip_rest()
            last = self.line
            self.refused.append(
                CsvRecord(
                    self.start,
                    self.start,
                    None,
                    f"row is longer than {self._max} characters (lines {self.start}-{last})",
                    self._head,
                )
            )
            if self._given:  # the reader is inside a quoted field of this record: close it
                self.cut = True
                self._given = False
                return '"\n'

    def _skip_rest(self) -> None:
        """Read on to the end of the current record, without keeping it."""
        while self.in_quotes:
            try:
                text = next(self._lines)
            except StopIteration:
                self.in_quotes = False
                return
            self.line += 1
            self.in_quotes = ends_in_quotes(text, True)

    def skip_record(self) -> None:
        """The reader gave up on the current record: skip what is left of it."""
        self._skip_rest()
        self._given = False

    def take_refused(self) -> list[CsvRecord]:
        out, self.refused = self.refused, []
        return out


def csv_records(fh: Iterable[str], *, max_row_chars: int = MAX_ROW_CHARS) -> Iterator[CsvRecord]:
    """Every record of a CSV text stream (opened with ``newline=""``), in file order."""
    lines = _Lines(iter(fh), max_row_chars)
    reader = csv.reader(lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            yield from lines.take_refused()
            return
        except csv.Error as exc:
            lines.skip_record()
            yield from lines.take_refused()
            yield CsvRecord(lines.start, lines.line, None, f"unreadable CSV: {exc}")
            continue
        yield from lines.take_refused()
        if lines.cut:
            lines.cut = False
            continue
        yield CsvRecord(lines.start, lines.line, cells)
