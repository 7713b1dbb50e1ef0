"""Dead letters: the stream of binds (and queue items) that could not be done, and what on-call
does with them.

- :mod:`~worker.deadletters.entry`: one entry (:class:`DeadLetter`);
- :mod:`~worker.deadletters.stream`: reading the stream (:class:`DeadLetters`: entries, select,
  stats, tail), which fronts replay, purge and audit;
- :mod:`~worker.deadletters.selection`: naming entries (ids, ``--since``, :class:`Selection`);
- :mod:`~worker.deadletters.replay`: putting an entry's key back on the queue;
- :mod:`~worker.deadletters.purge`: removing entries for good, and the audit stream;
- :mod:`~worker.deadletters.raw`: keeping a queue item that could not be run;
- :mod:`~worker.deadletters.retention`: the sweep past ``AXB_DLQ_RETENTION_DAYS``.
"""

from worker.deadletters.entry import DeadLetter
from worker.deadletters.raw import RAW_KEEP_CHARS, dead_letter_raw
from worker.deadletters.replay import NEEDS_FORCE, ReplayReport, ReplayResult
from worker.deadletters.retention import Retention
from worker.deadletters.selection import Selection, SelectionError, parse_entry_id, parse_since_ms
from worker.deadletters.stream import DeadLetters

__all__ = [
    "NEEDS_FORCE",
    "RAW_KEEP_CHARS",
    "DeadLetter",
    "DeadLetters",
    "ReplayReport",
    "ReplayResult",
    "Retention",
    "Selection",
    "SelectionError",
    "dead_letter_raw",
    "parse_entry_id",
    "parse_since_ms",
]
