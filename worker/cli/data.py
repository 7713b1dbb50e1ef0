"""``axb keygen``, ``axb rekey`` and ``axb forget``: personal data at rest from the command line.

No number is ever printed: ``forget`` shows the masked form.
"""

from __future__ import annotations

import base64
import getpass
import os
import socket
import sys

import click

from worker.cli.errors import fail
from worker.cli.options import json_option
from worker.cli.output import err_console, print_summary
from worker.errors import InvalidRequestError
from worker.masking import mask_obj
from worker.sealing import KEY_BYTES, DataKeyError


def _fail(message: str) -> None:
    fail(f"refused: {message}")


@click.command("keygen")
def keygen_command() -> None:
    """Print a new AXB_DATA_KEY (32 random bytes, URL-safe base64)."""
    click.echo(base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode())


@click.command("rekey")
@json_option("print counts as JSON")
def rekey_command(as_json: bool) -> None:
    """Re-seal every phone number and signed request under the first AXB_DATA_KEY key.

    Idempotent and resumable: run it again after an interruption. Prints the count."""
    from worker.privacy import rekey as run_rekey
    from worker.runtime import get_runtime
    from worker.sealing import check_data_key, data_keys

    rt = get_runtime()
    try:
        dk = data_keys(rt.settings)
        if not dk.enabled:
            _fail("AXB_DATA_KEY is not set: rekey seals under its first key")
        check_data_key(rt.redis, rt.settings)
        report = run_rekey(rt.redis, dk, user=getpass.getuser(), host=socket.gethostname())
    except DataKeyError as err:
        _fail(str(err))
        return
    out = {
        "resealed": report.total,
        "record_fields": report.values,
        "dead_letters": report.dead_letters,
        "changed_meanwhile": report.changed_meanwhile,
        "key_id": dk.first_id,
    }
    print_summary(
        out,
        as_json,
        f"re-sealed {report.total} value(s) under key {dk.first_id} ({report.values} record"
        f" field(s), {report.dead_letters} dead letter(s)); audit record written",
    )


@click.command("forget")
@click.option("--phone", required=True, help="the number to erase, in any spelling")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@json_option("print counts as JSON")
def forget_command(phone: str, yes: bool, as_json: bool) -> None:
    """Erase a phone number from every record, history and dead letter (a deletion request).

    Scans and opens every record and dead letter. Prints counts; writes an audit record holding
    the masked number and a keyed hash, never the number."""
    from worker.masking import mask_number
    from worker.privacy import forget as run_forget
    from worker.privacy import normalised
    from worker.runtime import get_runtime
    from worker.sealing import check_data_key, data_keys

    try:
        digits = normalised(phone)
    except InvalidRequestError as err:
        _fail(str(err))
        return
    if not yes:
        click.confirm(
            f"Erase {mask_number(digits)} from every record, history and dead letter? This cannot be undone",
            abort=True,
        )
    rt = get_runtime()
    try:
        check_data_key(rt.redis, rt.settings)
        report = run_forget(
            rt.redis,
            digits,
            data_keys(rt.settings),
            queue=rt.settings.queue,
            user=getpass.getuser(),
            host=socket.gethostname(),
        )
    except DataKeyError as err:
        _fail(str(err))
        return
    out = {
        "phone": mask_number(digits),
        "erased": report.total,
        "records": report.records,
        "cancelled": report.cancelled,
        "dead_letters": report.dead_letters,
        "in_flight": mask_obj(report.in_flight),
    }
    print_summary(
        out,
        as_json,
        f"erased {mask_number(digits)}: {report.records} record(s) ({report.cancelled} cancelled"
        f" before sending), {report.dead_letters} dead letter(s); audit record written",
    )
    if report.in_flight:
        err_console.print(
            f"{len(report.in_flight)} bind(s) have a request at the vendor: run axb forget again"
            " once they have finished",
            highlight=False,
        )
        sys.exit(1)
