"""``axb backfill``: enqueue every row of a CSV or JSONL file (see :mod:`worker.backfill`)."""

from __future__ import annotations

import json
import sys

import click

from worker.cli.options import json_option
from worker.cli.output import print_table
from worker.masking import mask_obj


@click.command("backfill")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    default=None,
    help="where invalid rows go (default FILE.rejects.csv)",
)
@click.option("--wait", is_flag=True, help="follow until every row succeeded or was dead-lettered")
@json_option("print a summary object")
@click.option(
    "--chunk", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="rows per round trip"
)
@click.option("--restart", is_flag=True, help="ignore saved progress and start from the first row")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto")
def backfill_command(
    file: str, rejects: str | None, wait: bool, as_json: bool, chunk: int, restart: bool, fmt: str
) -> None:
    """Enqueue every row of a CSV or JSONL file (API parameter names; optional IdempotencyKey)."""
    from worker.backfill import run_backfill

    summary = run_backfill(
        file,
        rejects_path=rejects,
        wait=wait,
        chunk=chunk,
        restart=restart,
        fmt=fmt,
        progress=not as_json and sys.stderr.isatty(),
    )
    if as_json:
        click.echo(json.dumps(mask_obj(summary), ensure_ascii=False, indent=2))
    else:
        print_table(summary)
