"""The one table ``python -m bench`` prints, as markdown, and its JSON twin."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "rate or figure", "ratio vs baseline", "target", "met?")


@dataclass
class Row:
    scenario: str
    figure: str
    ratio: str = ""
    target: str = ""
    met: bool | None = None  # None: no target (a baseline or an informative row)
    value: float | None = None
    unit: str = ""
    ratio_value: float | None = None
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> tuple[str, ...]:
        if self.error:
            return (self.scenario, f"error: {self.error}", "", self.target, "**error**")
        met = "" if self.met is None else ("yes" if self.met else "**NO**")
        return (self.scenario, self.figure, self.ratio, self.target, met)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "ratio": self.ratio,
            "ratio_value": self.ratio_value,
            "target": self.target,
            "met": self.met,
            "error": self.error or None,
            "details": self.details,
        }


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row]) -> str:
    cells = [COLUMNS, *(tuple(_escape(c) for c in r.cells()) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def write(
    out_dir: Path,
    rows: list[Row],
    meta: dict[str, Any],
    notes: list[str],
    stem: str = "latest",
    tables: list[str] | None = None,
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    head = (
        f"# `make bench` — {meta['finished_at']}\n\n"
        f"`{meta['command']}` on {meta['machine']}; {meta['duration_s']:.0f} s; "
        f"load average {meta['load_before']} before, {meta['load_after']} after.\n\n"
    )
    extra = "".join(f"{table}\n\n" for table in tables or [])
    md_path.write_text(head + markdown(rows) + "\n\n" + extra + "\n".join(f"- {n}" for n in notes) + "\n")
    json_path.write_text(
        json.dumps(
            {"meta": meta, "rows": [r.as_dict() for r in rows], "tables": tables or [], "notes": notes},
            indent=2,
        )
        + "\n"
    )
    return md_path, json_path
