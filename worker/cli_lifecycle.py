"""``axb unbind`` and ``axb extend``: the trip lifecycle from the command line.

Registered on :data:`worker.cli.main`. Phone numbers (the X number too) are masked in every
output unless ``--show-numbers`` is given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from worker.cli import _fail_invalid, _report_handle, main
from worker.cli_errors import MINUTES_AHEAD, WAIT_SECONDS, fail
from worker.errors import AxbError, InvalidRequestError


def _follow(handle: Any, wait: bool, timeout: float, as_json: bool, show_numbers: bool) -> None:
    info: dict[str, Any] = {
        "key": handle.key,
        "action": handle.action,
        "target": handle.target,
        "task_id": handle.task_id,
        "created": handle.created,
    }
    _report_handle(handle, info, wait=wait, timeout=timeout, as_json=as_json, show_numbers=show_numbers)


def _refused(err: AxbError, as_json: bool) -> None:
    if isinstance(err, InvalidRequestError):
        _fail_invalid(err, as_json)
    fail(f"refused: {err}")


@main.command()
@click.argument("key", required=False)
@click.option("--subs-id", default=None, help="unbind this subscription (with --pool-key and --secret-no)")
@click.option("--pool-key", default=None, help="the subscription's PoolKey")
@click.option("--secret-no", default=None, help="the subscription's X number")
@click.option("--wait", is_flag=True, help="wait until unbound (or dead-lettered)")
@click.option("--timeout", default=30.0, show_default=True, type=WAIT_SECONDS, help="seconds to --wait")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--show-numbers", is_flag=True)
def unbind(
    key: str | None,
    subs_id: str | None,
    pool_key: str | None,
    secret_no: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    show_numbers: bool,
) -> None:
    """Release a binding (the trip ended), by the bind's KEY or by --subs-id/--pool-key/--secret-no.

    A bind still queued is cancelled; one in flight is waited for, then unbound."""
    from worker.producer import enqueue_unbind

    try:
        handle = enqueue_unbind(key, subs_id=subs_id, pool_key=pool_key, secret_no=secret_no)
    except AxbError as err:
        _refused(err, as_json)
        return
    _follow(handle, wait, timeout, as_json, show_numbers)


@main.command()
@click.argument("key")
@click.option("--expiration", default=None, help="the new Expiration, yyyy-MM-dd HH:mm:ss (UTC+8)")
@click.option(
    "--expires-in", type=MINUTES_AHEAD, default=None, metavar="MINUTES", help="instead: minutes from now"
)
@click.option("--wait", is_flag=True, help="wait until extended (or dead-lettered)")
@click.option("--timeout", default=30.0, show_default=True, type=WAIT_SECONDS, help="seconds to --wait")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--show-numbers", is_flag=True)
def extend(
    key: str,
    expiration: str | None,
    expires_in: float | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    show_numbers: bool,
) -> None:
    """Move a binding's Expiration (the trip runs late); the stored result's TTL follows."""
    from worker.producer import enqueue_extend

    if expiration is None and expires_in is not None:
        cst = datetime.now(UTC) + timedelta(hours=8, minutes=expires_in)
        expiration = cst.strftime("%Y-%m-%d %H:%M:%S")
    if expiration is None:
        raise click.UsageError("give --expiration 'yyyy-MM-dd HH:mm:ss' or --expires-in MINUTES")
    try:
        handle = enqueue_extend(key, expiration)
    except AxbError as err:
        _refused(err, as_json)
        return
    _follow(handle, wait, timeout, as_json, show_numbers)
