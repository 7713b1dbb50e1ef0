"""A backfill's progress: the ``FILE.progress`` file a rerun resumes from, and the terminal bar."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Progress:
    """Rows done so far, saved after each chunk; a file of other content starts again at 0."""

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


class ProgressBar:
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
