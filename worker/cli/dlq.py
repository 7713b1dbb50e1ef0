"""``axb dlq``: dead letters from the command line: list, show, stats, replay, purge, watch.

Phone numbers are masked in every output unless ``--show-numbers`` is given; ``purge`` asks
first and leaves an audit record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from worker.cli.errors import fail
from worker.cli.options import FiniteFloat, json_option, show_numbers_option
from worker.cli.output import UTC8, err_console, format_time_ms, out_console, print_table
from worker.errors import is_account_level
from worker.masking import mask_obj, mask_text

F = TypeVar("F", bound=Callable[..., Any])


def _since_ms(value: str | None) -> int | None:
    """``10m``, ``2h``, ``3d``, ``90s`` ago, or an ISO date-time (naive = UTC+8)."""
    from worker.deadletters import parse_since_ms

    return parse_since_ms(value)


def selection_options(func: F) -> F:
    """``ID…``, ``--code``, ``--pool``, ``--since``, ``--all``: which dead letters."""
    func = click.option("--all", "select_all", is_flag=True, help="every dead letter")(func)
    func = click.option("--since", default=None, help="only newer than 10m / 2h / 3d / ISO time")(func)
    func = click.option("--pool", default=None, help="only this PoolKey")(func)
    func = click.option("--code", default=None, help="only this vendor code")(func)
    return click.argument("ids", nargs=-1)(func)


def _selection(
    ids: tuple[str, ...], code: str | None, pool: str | None, since: str | None, select_all: bool
) -> Any:
    from worker.deadletters import Selection, parse_entry_id

    ids = tuple(parse_entry_id(i) for i in ids)
    sel = Selection(ids=ids, code=code, pool=pool, since_ms=_since_ms(since), all=select_all)
    if sel.empty:
        raise click.UsageError("name entries: ID..., --code C, --pool P, --since T or --all")
    return sel


def _dead_letters() -> Any:
    from worker.deadletters import DeadLetters
    from worker.runtime import get_runtime

    return DeadLetters(get_runtime().redis)


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, show, stats, replay, purge, watch."""


@dlq_group.command("list")
@click.option("--code", default=None, help="only this vendor code")
@click.option("--pool", default=None, help="only this PoolKey")
@click.option("--since", default=None, help="only newer than 10m / 2h / 3d / ISO time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@json_option("a JSON array for tools")
@show_numbers_option()
def dlq_list(
    code: str | None, pool: str | None, since: str | None, limit: int, as_json: bool, show_numbers: bool
) -> None:
    """List dead letters, oldest first."""
    entries = _dead_letters().entries(code=code, pool=pool, since_ms=_since_ms(since), limit=limit)
    rows = [e.as_dict(show_numbers=show_numbers) for e in entries]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "when (UTC+8)", "key", "pool", "code", "tries", "message", "request_id")
    for r in rows:
        cells = (
            r["id"],
            format_time_ms(r["dead_lettered_at"]),
            r["key"],
            r["pool"],
            r["code"],
            str(r["attempts"]),
        )
        table.add_row(*(Text(c) for c in (*cells, r["message"][:50], r["request_id"])))
    out_console().print(table)
    err_console.print(f"{len(rows)} dead letter(s)")


@dlq_group.command("show")
@click.argument("entry_id")
@json_option()
@show_numbers_option()
def dlq_show(entry_id: str, as_json: bool, show_numbers: bool) -> None:
    """One dead letter in full, with its attempt history."""
    from worker.deadletters import parse_entry_id

    dl = _dead_letters().get(parse_entry_id(entry_id))
    if dl is None:
        fail(f"no dead letter {entry_id!r}", 4)
    info = dl.as_dict(show_numbers=show_numbers)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    history = info.pop("history")
    request = info.pop("request")
    print_table(info, show_numbers)
    out_console().print(
        "[bold]request[/bold]", escape(json.dumps(request, ensure_ascii=False)), highlight=False
    )
    table = Table(
        "attempt", "at (UTC+8)", "code", "http", "latency ms", "replay", "request_id", title="history"
    )
    for h in history:
        cells = (
            str(h.get("attempt", "")),
            format_time_ms(h.get("at")),
            str(h.get("code", "")),
            str(h.get("http_status") or ""),
            str(h.get("latency_ms", "")),
            str(h.get("replay", "")),
            str(h.get("request_id", "") or h.get("from", "")),
        )
        table.add_row(*(Text(c) for c in cells))
    out_console().print(table)


@dlq_group.command("stats")
@json_option()
def dlq_stats(as_json: bool) -> None:
    """Total, counts by code and pool, the age of the oldest entry and when retention removes it."""
    from worker.execution import describe_holds, holds_in_force
    from worker.runtime import get_runtime

    rt = get_runtime()
    stats = mask_obj(_dead_letters().stats(retention_days=rt.settings.dlq_retention_days))
    stats["holds"] = [h.as_dict() for h in holds_in_force(rt.redis, rt.settings.access_key_id)]
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    out_console().print(describe_holds(stats["holds"]), highlight=False)
    goes_at = datetime.fromtimestamp((stats["oldest_goes_at"] or 0) / 1000, tz=UTC8)
    goes = f"   removed by retention ({stats['retention_days']:g} d) at {goes_at:%Y-%m-%d %H:%M} UTC+8"
    out_console().print(
        f"total: {stats['total']}   oldest: {stats['oldest_age_s']} s"
        + (goes if stats["oldest_goes_at"] else ""),
        highlight=False,
    )
    table = Table("code", "count", "account-level")
    for code, n in stats["by_code"].items():
        table.add_row(Text(code), str(n), "yes" if is_account_level(code) else "")
    out_console().print(table)


@dlq_group.command("replay")
@selection_options
@click.option(
    "--rate",
    default=50.0,
    show_default=True,
    type=FiniteFloat(0.01, 100_000, "per second"),
    help="re-enqueues per second at most",
)
@click.option("--force", is_flag=True, help="also replay axb.AMBIGUOUS_OUTCOME (after reconciling!)")
@json_option()
def dlq_replay(
    ids: tuple[str, ...],
    code: str | None,
    pool: str | None,
    since: str | None,
    select_all: bool,
    rate: float,
    force: bool,
    as_json: bool,
) -> None:
    """Re-enqueue dead letters under their own idempotency keys, at a bounded rate."""
    from worker.runtime import get_runtime

    dead = _dead_letters()
    sel = _selection(ids, code, pool, since, select_all)
    rt = get_runtime()
    report = dead.replay(
        dead.select(sel),
        rt.publish,
        rate_qps=rate,
        force=force,
        result_ttl_extra_s=rt.settings.result_ttl_extra_s,
        queue=rt.settings.queue,
        watch_s=rt.settings.watchdog_s,
    )
    out = {"replayed": report.replayed, "skipped": [{"id": i, "reason": r} for i, r in report.skipped]}
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        out_console().print(f"replayed {len(report.replayed)}, skipped {len(report.skipped)}")
        for i, r in report.skipped:
            err_console.print(f"  skipped {i}: {r}", highlight=False)


@dlq_group.command("purge")
@selection_options
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def dlq_purge(
    ids: tuple[str, ...], code: str | None, pool: str | None, since: str | None, select_all: bool, yes: bool
) -> None:
    """Delete dead letters for good (asks first; leaves an audit record)."""
    import getpass
    import socket

    dead = _dead_letters()
    sel = _selection(ids, code, pool, since, select_all)
    entries = dead.select(sel)
    if not entries:
        err_console.print("nothing matches")
        return
    if not yes:
        click.confirm(
            f"Purge {len(entries)} dead letter(s) ({sel.describe()})? This cannot be undone", abort=True
        )
    n = dead.purge(entries, selection=sel.describe(), user=getpass.getuser(), host=socket.gethostname())
    out_console().print(f"purged {n} dead letter(s); audit record written")


@dlq_group.command("watch")
@click.option("--code", default=None)
@click.option(
    "--interval", default=1.0, show_default=True, type=FiniteFloat(0.01, 3600, "s"), help="seconds per poll"
)
@click.option(
    "--count", default=0, type=click.IntRange(0), help="stop after this many new entries (0: never)"
)
@show_numbers_option()
def dlq_watch(code: str | None, interval: float, count: int, show_numbers: bool) -> None:
    """Print new dead letters as they arrive (Ctrl-C to stop)."""
    dead = _dead_letters()
    last = dead.newest_id()
    seen = 0
    err_console.print("watching for new dead letters…")
    try:
        while True:
            for dl in dead.tail(last, block_ms=int(interval * 1000)):
                last = dl.id
                if code and dl.code != code:
                    continue
                seen += 1
                line = (
                    f"{format_time_ms(dl.dead_lettered_at)}  {dl.code:<28} key={dl.key} pool={dl.pool} "
                    f"attempts={dl.attempts} {dl.message}"
                )
                out_console().print(
                    line if show_numbers else mask_text(line), highlight=False, markup=False, soft_wrap=True
                )
                if count and seen >= count:
                    return
    except KeyboardInterrupt:
        return
