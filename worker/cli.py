"""``axb``: the one command line for producers, workers, the simulator and on-call.

Phone numbers are masked in every output unless ``--show-numbers`` is given.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from worker.cli_errors import MINUTES_AHEAD, WAIT_SECONDS, AxbGroup, FiniteFloat, fail
from worker.errors import AxbError, InvalidRequestError, VendorError
from worker.masking import mask_obj, mask_text

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


def out_console() -> Console:
    """Full width on a terminal; wide enough for tables when piped or captured."""
    return Console(width=None if sys.stdout.isatty() else 160)


# (option, API name, click type, help)
_BIND_FIELDS: list[tuple[str, str, Any, str]] = [
    ("--pool-key", "PoolKey", str, "number pool key, e.g. FC100000001"),
    ("--phone-no-a", "PhoneNoA", str, "phone A (mobile or landline with area code)"),
    ("--phone-no-b", "PhoneNoB", str, "phone B"),
    ("--expiration", "Expiration", str, "yyyy-MM-dd HH:mm:ss, China Standard Time (UTC+8)"),
    ("--phone-no-x", "PhoneNoX", str, "bind on this X number"),
    ("--expect-city", "ExpectCity", str, "preferred city for X, without suffix (北京)"),
    ("--is-recording-enabled", "IsRecordingEnabled", str, "record calls (true/false)"),
    ("--out-id", "OutId", str, "business id, echoed in call records (default idempotency key)"),
    ("--out-order-id", "OutOrderId", str, "order id"),
    ("--call-display-type", "CallDisplayType", str, "fixed value 1"),
    (
        "--call-restrict",
        "CallRestrict",
        str,
        "CONTROL_AX_DISABLE, CONTROL_BX_DISABLE or CONTROL_CLEAR_DISABLE",
    ),
    ("--call-timeout", "CallTimeout", str, "ring timeout in seconds (5-20)"),
    ("--asr-status", "ASRStatus", str, "speech recognition on/off (true/false)"),
    ("--asr-model-id", "ASRModelId", str, "ASR model id"),
    ("--ring-config", "RingConfig", str, "ring configuration (JSON text)"),
    ("--dtmf-config", "DtmfConfig", str, "DTMF configuration (JSON text)"),
]


def bind_options(func: F) -> F:
    """Add one flag per BindAxb parameter, plus ``--expires-in``.

    Every flag is taken as text and checked by the request model, so a bad value is refused
    like any other bad input: naming the API field and the vendor code it would cause."""
    for flag, _api, typ, help_ in reversed(_BIND_FIELDS):
        func = click.option(flag, type=typ, default=None, help=help_)(func)
    return click.option(
        "--expires-in",
        type=MINUTES_AHEAD,
        default=None,
        metavar="MINUTES",
        help="instead of --expiration: this many minutes from now",
    )(func)


def _bind_params(kw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, api, _typ, _help in _BIND_FIELDS:
        value = kw.pop(flag[2:].replace("-", "_"), None)
        if value is not None:
            out[api] = value
    expires_in = kw.pop("expires_in", None)
    if expires_in is not None and "Expiration" not in out:
        cst = datetime.now(UTC) + timedelta(hours=8) + timedelta(minutes=expires_in)
        out["Expiration"] = cst.strftime("%Y-%m-%d %H:%M:%S")
    return out


def _emit(obj: Any, show_numbers: bool) -> None:
    click.echo(json.dumps(obj if show_numbers else mask_obj(obj), ensure_ascii=False, indent=2))


def _fail_invalid(err: InvalidRequestError, as_json: bool = True) -> None:
    payload = {
        "Code": err.code,
        "Message": str(err),
        "Problems": [{"field": p.field, "code": p.code, "reason": p.reason} for p in err.problems],
    }
    if as_json:
        _emit(payload, False)
    err_console.print(f"[red]invalid request:[/red] {escape(mask_text(str(err)))}", highlight=False)
    sys.exit(2)


@click.group(cls=AxbGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Bind Dypls privacy numbers (BindAxb) through a reliable, rate-limited task queue."""


# --- axb call ---------------------------------------------------------------------------------


@main.group()
def call() -> None:
    """Direct, synchronous, signed vendor calls: no queue (credentials checks, reproductions)."""


@call.command("bind")
@bind_options
@click.option("--show-numbers", is_flag=True, help="print phone numbers unmasked")
def call_bind(show_numbers: bool, **kw: Any) -> None:
    """Call BindAxb once and print the JSON response; non-zero exit on any non-OK code."""
    from worker.client import DyplsClient
    from worker.models import parse_bind_request

    try:
        request = parse_bind_request(_bind_params(kw))
    except InvalidRequestError as err:
        _fail_invalid(err)
        return
    with DyplsClient() as client:
        try:
            response = client.bind_axb(request)
        except VendorError as err:
            _emit(
                {
                    "RequestId": err.request_id,
                    "Code": err.code,
                    "Message": err.vendor_message,
                    "HttpStatus": err.http_status,
                },
                show_numbers,
            )
            err_console.print(f"[red]{err.code}[/red] ({err.handling.value})", highlight=False)
            sys.exit(1)
    _emit(response.model_dump(by_alias=True, exclude_none=True), show_numbers)


@call.command("unbind")
@click.option("--pool-key", required=True)
@click.option("--secret-no", required=True, help="the X number")
@click.option("--subs-id", required=True)
@click.option("--show-numbers", is_flag=True)
def call_unbind(pool_key: str, secret_no: str, subs_id: str, show_numbers: bool) -> None:
    """Call UnbindSubscription once (isv.SUBS_NOT_EXIST counts as done)."""
    from worker.client import DyplsClient

    with DyplsClient() as client:
        try:
            response = client.unbind_subscription(pool_key, secret_no, subs_id)
        except VendorError as err:
            _emit(
                {"RequestId": err.request_id, "Code": err.code, "Message": err.vendor_message}, show_numbers
            )
            sys.exit(1)
    _emit(response.model_dump(by_alias=True), show_numbers)


# --- axb simulator ----------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8088, show_default=True, type=click.IntRange(0, 65535))
@click.option("--latency-ms", default=0.0, show_default=True, type=FiniteFloat(0, 600_000, "ms"))
@click.option("--jitter-ms", default=0.0, show_default=True, type=FiniteFloat(0, 600_000, "ms"))
@click.option(
    "--error-rate",
    default=0.0,
    show_default=True,
    type=FiniteFloat(0, 1),
    help="fraction of BindAxb calls answered with a transient code",
)
@click.option(
    "--qps-limit", default=None, type=click.IntRange(1), help="answer isv.FLOW_LIMIT above this many calls/s"
)
@click.option("--seed", default=None, type=int)
@click.option(
    "--pool-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="X numbers in the default pool",
)
def simulator(
    host: str,
    port: int,
    latency_ms: float,
    jitter_ms: float,
    error_rate: float,
    qps_limit: int | None,
    seed: int | None,
    pool_size: int,
) -> None:
    """Run the local Dypls simulator (signatures, validation, number pools, faults, ledger)."""
    from worker.simulator.cli import run_simulator

    run_simulator(
        host=host,
        port=port,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_rate=error_rate,
        qps_limit=qps_limit,
        seed=seed,
        pool_size=pool_size,
    )


# --- axb worker -------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--pool", "pool_type", default=None, help="Celery pool (default AXB_WORKER_POOL)")
@click.option(
    "-c", "--concurrency", default=None, type=click.IntRange(1, 10_000), help="default AXB_WORKER_CONCURRENCY"
)
@click.option("-l", "--loglevel", default=None)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    pool_type: str | None, concurrency: int | None, loglevel: str | None, celery_args: tuple[str, ...]
) -> None:
    """Start a Celery worker with the project's defaults (extra args go to Celery)."""
    from worker.celery_app import check_settings
    from worker.logs import setup_logging
    from worker.settings import get_settings

    s = get_settings()
    check_settings(s)
    setup_logging(s)
    pool = pool_type or s.worker_pool
    if s.metrics_port and pool == "prefork" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Children count into files that the main process aggregates when /metrics is scraped.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="axb-metrics-")
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or s.worker_concurrency}",
        f"--loglevel={loglevel or s.log_level}",
        f"--queues={s.queue}",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
        *celery_args,
    ]
    # app.worker_main() drops the exit status of Celery's command (0 even after "Unrecoverable
    # error"); run the command ourselves and exit with it, so that a supervisor restarting on
    # failure sees the failure.
    from celery.bin.celery import celery as celery_command

    sys.exit(celery_command.main(args=["--app=worker.celery_app:app", *argv], standalone_mode=False) or 0)


# --- axb enqueue / result ---------------------------------------------------------------------


@main.command()
@bind_options
@click.option("--key", default=None, help="idempotency key (default: OutId, else a hash of the request)")
@click.option("--wait", is_flag=True, help="wait until succeeded or dead-lettered")
@click.option("--timeout", default=30.0, show_default=True, type=WAIT_SECONDS, help="seconds to --wait")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--show-numbers", is_flag=True)
def enqueue(
    key: str | None, wait: bool, timeout: float, as_json: bool, show_numbers: bool, **kw: Any
) -> None:
    """Validate and enqueue one bind."""
    from worker.producer import enqueue_bind

    try:
        handle = enqueue_bind(_bind_params(kw), idempotency_key=key)
    except InvalidRequestError as err:
        _fail_invalid(err, as_json)
        return
    except AxbError as err:
        err_console.print(f"[red]refused:[/red] {escape(mask_text(str(err)))}", highlight=False)
        sys.exit(2)
    info: dict[str, Any] = {"key": handle.key, "task_id": handle.task_id, "created": handle.created}
    _report_handle(handle, info, wait=wait, timeout=timeout, as_json=as_json, show_numbers=show_numbers)


def _report_handle(
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
        _emit(info, show_numbers)
    else:
        _print_result_table(info, show_numbers)
    if wait and info.get("status") != "succeeded":
        sys.exit(1)


def _print_result_table(info: dict[str, Any], show_numbers: bool = False) -> None:
    table = Table(show_header=False, box=None)
    for k, v in (info if show_numbers else mask_obj(info)).items():
        shown = ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v
        table.add_row(Text(str(k), style="bold"), Text("" if shown is None else str(shown)))
    out_console().print(table)


@main.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-numbers", is_flag=True)
def result(key: str, as_json: bool, show_numbers: bool) -> None:
    """Show a bind's status and SecretBindDTO by idempotency key."""
    from worker.producer import get_result

    res = get_result(key)
    if res is None:
        fail(f"no bind with key {key!r}", 4)
    info = res.as_dict(show_numbers=show_numbers)
    if as_json:
        _emit(info, show_numbers)
    else:
        _print_result_table(info, show_numbers)


# --- axb backfill -----------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    default=None,
    help="where invalid rows go (default FILE.rejects.csv)",
)
@click.option("--wait", is_flag=True, help="follow until every row succeeded or was dead-lettered")
@click.option("--json", "as_json", is_flag=True, help="print a summary object")
@click.option(
    "--chunk", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="rows per round trip"
)
@click.option("--restart", is_flag=True, help="ignore saved progress and start from the first row")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto")
def backfill(
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
        _print_result_table(summary)


# --- axb dlq ----------------------------------------------------------------------------------


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


def _ts(ms: Any) -> str:
    if not ms:
        return ""
    try:
        return datetime.fromtimestamp(float(ms) / 1000, tz=timezone(timedelta(hours=8))).strftime(
            "%m-%d %H:%M:%S"
        )
    except (TypeError, ValueError, OverflowError, OSError):  # not a time we wrote: show it as it is
        return str(ms)


@main.group()
def dlq() -> None:
    """Dead letters: list, show, stats, replay, purge, watch."""


@dlq.command("list")
@click.option("--code", default=None, help="only this vendor code")
@click.option("--pool", default=None, help="only this PoolKey")
@click.option("--since", default=None, help="only newer than 10m / 2h / 3d / ISO time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="a JSON array for tools")
@click.option("--show-numbers", is_flag=True)
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
        cells = (r["id"], _ts(r["dead_lettered_at"]), r["key"], r["pool"], r["code"], str(r["attempts"]))
        table.add_row(*(Text(c) for c in (*cells, r["message"][:50], r["request_id"])))
    out_console().print(table)
    err_console.print(f"{len(rows)} dead letter(s)")


@dlq.command("show")
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-numbers", is_flag=True)
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
    _print_result_table(info, show_numbers)
    out_console().print(
        "[bold]request[/bold]", escape(json.dumps(request, ensure_ascii=False)), highlight=False
    )
    table = Table(
        "attempt", "at (UTC+8)", "code", "http", "latency ms", "replay", "request_id", title="history"
    )
    for h in history:
        cells = (
            str(h.get("attempt", "")),
            _ts(h.get("at")),
            str(h.get("code", "")),
            str(h.get("http_status") or ""),
            str(h.get("latency_ms", "")),
            str(h.get("replay", "")),
            str(h.get("request_id", "") or h.get("from", "")),
        )
        table.add_row(*(Text(c) for c in cells))
    out_console().print(table)


@dlq.command("stats")
@click.option("--json", "as_json", is_flag=True)
def dlq_stats(as_json: bool) -> None:
    """Total, counts by code and pool, the age of the oldest entry and when retention removes it."""
    from worker.hold import holds_in_force
    from worker.runtime import get_runtime
    from worker.status import describe_holds

    rt = get_runtime()
    stats = mask_obj(_dead_letters().stats(retention_days=rt.settings.dlq_retention_days))
    stats["holds"] = [h.as_dict() for h in holds_in_force(rt.redis, rt.settings.access_key_id)]
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    out_console().print(describe_holds(stats["holds"]), highlight=False)
    goes_at = datetime.fromtimestamp((stats["oldest_goes_at"] or 0) / 1000, tz=timezone(timedelta(hours=8)))
    goes = f"   removed by retention ({stats['retention_days']:g} d) at {goes_at:%Y-%m-%d %H:%M} UTC+8"
    out_console().print(
        f"total: {stats['total']}   oldest: {stats['oldest_age_s']} s"
        + (goes if stats["oldest_goes_at"] else ""),
        highlight=False,
    )
    table = Table("code", "count", "account-level")
    from worker.errors import is_account_level

    for code, n in stats["by_code"].items():
        table.add_row(Text(code), str(n), "yes" if is_account_level(code) else "")
    out_console().print(table)


@dlq.command("replay")
@selection_options
@click.option(
    "--rate",
    default=50.0,
    show_default=True,
    type=FiniteFloat(0.01, 100_000, "per second"),
    help="re-enqueues per second at most",
)
@click.option("--force", is_flag=True, help="also replay axb.AMBIGUOUS_OUTCOME (after reconciling!)")
@click.option("--json", "as_json", is_flag=True)
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


@dlq.command("purge")
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


@dlq.command("watch")
@click.option("--code", default=None)
@click.option(
    "--interval", default=1.0, show_default=True, type=FiniteFloat(0.01, 3600, "s"), help="seconds per poll"
)
@click.option(
    "--count", default=0, type=click.IntRange(0), help="stop after this many new entries (0: never)"
)
@click.option("--show-numbers", is_flag=True)
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
                    f"{_ts(dl.dead_lettered_at)}  {dl.code:<28} key={dl.key} pool={dl.pool} "
                    f"attempts={dl.attempts} {dl.message}"
                )
                out_console().print(
                    line if show_numbers else mask_text(line), highlight=False, markup=False, soft_wrap=True
                )
                if count and seen >= count:
                    return
    except KeyboardInterrupt:
        return


# The trip lifecycle commands (``axb unbind``, ``axb extend``), ``axb status``, the personal
# data commands (``axb keygen``, ``axb rekey``, ``axb forget``), ``axb api`` and ``axb token``
# live in their own modules.
from worker import cli_api, cli_data, cli_lifecycle, cli_status, cli_tokens  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # `python -m worker.cli` runs this file as __main__, a second copy of the module: the commands
    # above register on worker.cli's group, so run that one.
    from worker.cli import main as registered_main

    registered_main()
