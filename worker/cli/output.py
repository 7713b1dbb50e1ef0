"""What ``axb`` prints: the two consoles, JSON, key/value tables and times, masked unless asked.

Phone numbers are masked (:mod:`worker.masking`) in everything printed here unless the command
got ``--show-numbers``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from worker.masking import mask_obj, mask_text

err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long

UTC8 = timezone(timedelta(hours=8))


def out_console() -> Console:
    """Full width on a terminal; wide enough for tables when piped or captured."""
    return Console(width=None if sys.stdout.isatty() else 160)


def emit(obj: Any, show_numbers: bool) -> None:
    """Print ``obj`` as indented JSON on stdout, numbers masked unless ``show_numbers``."""
    click.echo(json.dumps(obj if show_numbers else mask_obj(obj), ensure_ascii=False, indent=2))


def print_summary(summary: dict[str, Any], as_json: bool, sentence: str) -> None:
    """Print a command's outcome: ``summary`` as one line of JSON with ``--json``, else ``sentence``."""
    if as_json:
        click.echo(json.dumps(summary))
    else:
        out_console().print(sentence, highlight=False)


def print_table(info: dict[str, Any], show_numbers: bool = False) -> None:
    """Print ``info`` as a two-column key/value table (a dict value as ``a=b, c=d``)."""
    table = Table(show_header=False, box=None)
    for k, v in (info if show_numbers else mask_obj(info)).items():
        shown = ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v
        table.add_row(Text(str(k), style="bold"), Text("" if shown is None else str(shown)))
    out_console().print(table)


def format_time_ms(ms: Any) -> str:
    """A millisecond timestamp as ``MM-dd HH:mm:ss`` (UTC+8); what is not a time, as it is."""
    if not ms:
        return ""
    try:
        return datetime.fromtimestamp(float(ms) / 1000, tz=UTC8).strftime("%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):  # not a time we wrote: show it as it is
        return str(ms)


def report_handle(
    handle: Any, info: dict[str, Any], *, wait: bool, timeout: float, as_json: bool, show_numbers: bool
) -> None:
    """Print an enqueued handle (after ``--wait``, with its result); exit 3 on a wait that timed
    out, 1 when the wait ended in anything but success."""
    if wait:
        try:
            res = handle.result(timeout=timeout)
        except TimeoutError as err:
            err_console.print(f"[yellow]{escape(mask_text(str(err)))}[/yellow]", highlight=False)
            sys.exit(3)
        info.update(res.as_dict(show_numbers=show_numbers))
    if as_json:
        emit(info, show_numbers)
    else:
        print_table(info, show_numbers)
    if wait and info.get("status") != "succeeded":
        sys.exit(1)
