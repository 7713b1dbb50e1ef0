"""``axb unbind`` and ``axb extend``: the trip lifecycle from the command line.

Phone numbers (the X number too) are masked in every output unless ``--show-numbers`` is given.
"""

from __future__ import annotations

from typing import Any

import click

from worker.cli.errors import refuse
from worker.cli.options import expiration_in, expires_in_option, follow_options
from worker.cli.output import report_handle
from worker.errors import AxbError


def _follow(handle: Any, wait: bool, timeout: float, as_json: bool, show_numbers: bool) -> None:
    info: dict[str, Any] = {
        "key": handle.key,
        "action": handle.action,
        "target": handle.target,
        "task_id": handle.task_id,
        "created": handle.created,
    }
    report_handle(handle, info, wait=wait, timeout=timeout, as_json=as_json, show_numbers=show_numbers)


@click.command("unbind")
@click.argument("key", required=False)
@click.option("--subs-id", default=None, help="unbind this subscription (with --pool-key and --secret-no)")
@click.option("--pool-key", default=None, help="the subscription's PoolKey")
@click.option("--secret-no", default=None, help="the subscription's X number")
@follow_options("wait until unbound (or dead-lettered)")
def unbind_command(
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
        refuse(err, as_json)
    _follow(handle, wait, timeout, as_json, show_numbers)


@click.command("extend")
@click.argument("key")
@click.option("--expiration", default=None, help="the new Expiration, yyyy-MM-dd HH:mm:ss (UTC+8)")
@expires_in_option("instead: minutes from now")
@follow_options("wait until extended (or dead-lettered)")
def extend_command(
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
        expiration = expiration_in(expires_in)
    if expiration is None:
        raise click.UsageError("give --expiration 'yyyy-MM-dd HH:mm:ss' or --expires-in MINUTES")
    try:
        handle = enqueue_extend(key, expiration)
    except AxbError as err:
        refuse(err, as_json)
    _follow(handle, wait, timeout, as_json, show_numbers)
