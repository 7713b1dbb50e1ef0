"""``axb backfill FILE``: enqueue a CSV or JSONL file of binds, unbinds and extends, resumable.

Modules: :mod:`.reader` (CSV records, a bounded line reader), :mod:`.cells` (spreadsheet-safe
cells), :mod:`.rows` (a file's data rows and header checks), :mod:`.progress` (the resume file
and the bar), :mod:`.run` (:func:`run_backfill`: chunks, rejects, counts), :mod:`.wait`
(``--wait``).
"""

from __future__ import annotations

from worker.backfill.cells import FORMULA_PREFIXES, safe_cell, safe_writer, unescape_cell
from worker.backfill.progress import Progress, ProgressBar
from worker.backfill.reader import MAX_ROW_CHARS, csv_records
from worker.backfill.rows import MAX_FIELD_CHARS, Row, check_header, iter_rows, read_csv_header
from worker.backfill.run import ACTION_COLUMN, ACTIONS, KEY_COLUMN, run_backfill
from worker.backfill.wait import wait_all

__all__ = [
    "ACTIONS",
    "ACTION_COLUMN",
    "FORMULA_PREFIXES",
    "KEY_COLUMN",
    "MAX_FIELD_CHARS",
    "MAX_ROW_CHARS",
    "Progress",
    "ProgressBar",
    "Row",
    "check_header",
    "csv_records",
    "iter_rows",
    "read_csv_header",
    "run_backfill",
    "safe_cell",
    "safe_writer",
    "unescape_cell",
    "wait_all",
]
