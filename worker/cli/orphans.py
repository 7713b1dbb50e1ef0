"""``axb orphans list [--json]``: the possible-orphans ledger (see :mod:`worker.orphans`).

Numbers (in keys) are masked unless ``--show-numbers``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.table import Table

from worker.cli.output import out_console


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "-"


@click.group("orphans")
def orphans_group() -> None:
    """Possible orphan bindings: first copies of ambiguous binds that were bound again."""


@orphans_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--show-numbers", is_flag=True, help="print phone numbers in keys unmasked")
def orphans_list(as_json: bool, show_numbers: bool) -> None:
    """Each possible orphan: key, RequestId, pool, when sent, when its binding expires."""
    from worker.orphans import list_possible_orphans
    from worker.runtime import get_runtime

    entries = [o.as_dict(show_numbers=show_numbers) for o in list_possible_orphans(get_runtime().redis)]
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    if not entries:
        out_console().print("no possible orphans", highlight=False)
        return
    table = Table("key", "request_id", "pool", "sent", "expires", "note", title="possible orphans")
    for o in entries:
        table.add_row(
            o["key"], o["request_id"], o["pool"], _when(o["sent_at_ms"]), _when(o["expires_at_ms"]), o["note"]
        )
    out_console().print(table)
