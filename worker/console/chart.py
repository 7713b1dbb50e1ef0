"""Binds per minute by outcome and dead letters by code: read the per-minute counters that
``worker/store/lua/finished.lua`` keeps (:func:`worker.keys.outcome_minute`, 25 h) and draw them as SVG.

The SVG is built here as plain data (polylines, labels) and written by a template: no script,
no inline style, so the page keeps its strict Content-Security-Policy.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker import keys
from worker.redis_text import as_text

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 640, 200, 40, 20, 10
MAX_SERIES = 6  # outcomes plus the commonest dead-letter codes; the rest are summed as "other"


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # class of the line (colours live in console.css)
    points: str  # SVG polyline points
    total: int


@dataclass
class Chart:
    title: str
    span_label: str
    start_label: str
    bucket_s: int
    peak: int
    series: list[Series] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    pad_l: int = PAD_L
    pad_b: int = PAD_B
    pad_t: int = PAD_T

    @property
    def empty(self) -> bool:
        return all(s.total == 0 for s in self.series)


def read_minutes(redis: Any, minutes: int, *, now_s: float | None = None) -> list[Counter[str]]:
    """The counters of the last ``minutes`` minutes, oldest first (one pipelined round trip)."""
    this_minute = int((time.time() if now_s is None else now_s) // 60)
    pipe = redis.pipeline(transaction=False)
    for m in range(this_minute - minutes + 1, this_minute + 1):
        pipe.hgetall(keys.outcome_minute(m))
    out = []
    for raw in pipe.execute():
        out.append(Counter({as_text(k): int(v) for k, v in (raw or {}).items()}))
    return out


def _bucket(minutes: list[Counter[str]], per: int) -> list[Counter[str]]:
    out = []
    for i in range(0, len(minutes), per):
        c: Counter[str] = Counter()
        for m in minutes[i : i + per]:
            c.update(m)
        out.append(c)
    return out


def build(title: str, span_label: str, minutes: list[Counter[str]], per: int) -> tuple[Chart, Chart]:
    """Two charts over the same span: binds by outcome, and dead letters by code."""
    buckets = _bucket(minutes, per)
    start = f"{len(minutes)} min ago" if len(minutes) < 120 else f"{len(minutes) // 60} h ago"
    outcomes = _chart(f"{title}: binds by outcome", span_label, start, buckets, "bind:", per)
    codes = _chart(f"{title}: dead letters by code", span_label, start, buckets, "dlq:", per)
    return outcomes, codes


def _chart(
    title: str, span_label: str, start: str, buckets: list[Counter[str]], prefix: str, per: int
) -> Chart:
    totals: Counter[str] = Counter()
    for b in buckets:
        totals.update({k[len(prefix) :]: v for k, v in b.items() if k.startswith(prefix)})
    names = [n for n, _ in totals.most_common(MAX_SERIES)]
    rest = set(totals) - set(names)
    lines: dict[str, list[int]] = {n: [] for n in names}
    if rest:
        lines["other"] = []
    for b in buckets:
        for n in names:
            lines[n].append(b.get(prefix + n, 0))
        if rest:
            lines["other"].append(sum(b.get(prefix + n, 0) for n in rest))
    peak = max([1, *(v for vals in lines.values() for v in vals)])
    chart = Chart(title=title, span_label=span_label, start_label=start, bucket_s=per * 60, peak=peak)
    plot_w, plot_h = WIDTH - PAD_L - 4, HEIGHT - PAD_B - PAD_T
    step = plot_w / max(1, len(buckets) - 1)
    for i, (name, vals) in enumerate(lines.items()):
        pts = " ".join(
            f"{PAD_L + j * step:.1f},{PAD_T + plot_h - v / peak * plot_h:.1f}" for j, v in enumerate(vals)
        )
        css = {"succeeded": "s-ok", "dead_lettered": "s-dead", "cancelled": "s-cancel"}.get(
            name, f"s-{i % 6}"
        )
        chart.series.append(Series(name=name, css=css, points=pts, total=sum(vals)))
    return chart
