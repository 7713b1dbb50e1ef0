"""``axb status``: is the cluster holding its vendor calls, and why; queue, dead letters, Redis memory.

Exit code 0 when calls flow, 1 while a hold is in force
(so a script can wait on it).
"""

from __future__ import annotations

import json
import sys

import click

from worker.cli.options import json_option
from worker.cli.output import out_console


@click.command("status")
@json_option("print JSON")
def status_command(as_json: bool) -> None:
    """The hold in force (account refused, vendor unreachable…), with its reason and start; the
    queue, held and delayed keys, dead letters and Redis memory."""
    from worker.execution import cluster_status, describe_holds
    from worker.runtime import get_runtime

    rt = get_runtime()
    st = cluster_status(rt.redis, rt.settings.access_key_id, rt.settings.queue)
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False, indent=2))
    else:
        console = out_console()
        console.print(describe_holds(st["holds"]), highlight=False)
        q = st["queue"]
        console.print(
            f"queue {q['name']}: {q['messages']} message(s); keys delayed {q['delayed_keys']},"
            f" held by the vendor hold {q['held_keys']}; dead letters {st['dead_letters']}",
            highlight=False,
        )
        mem = st["redis_memory"]
        limit = (
            f"{mem['max_bytes'] / 1e6:.1f} MB ({mem['used_ratio']:.0%} used)" if mem["max_bytes"] else "none"
        )
        console.print(
            f"Redis memory: {mem['used_bytes'] / 1e6:.1f} MB used, maxmemory {limit}, policy {mem['policy']}",
            highlight=False,
        )
    if st["holds"]:
        sys.exit(1)
