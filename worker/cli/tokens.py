"""``axb token create / list / revoke``: the API's bearer tokens (see :mod:`worker.tokens`).

``create`` prints the token once, on stdout alone (so
``TOKEN=$(axb token create orders --scopes bind,read)`` works); only its hash is stored.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from worker.cli.options import json_option
from worker.cli.output import err_console, out_console

if TYPE_CHECKING:
    from worker.tokens import TokenStore


def _store() -> TokenStore:
    from worker.runtime import get_runtime
    from worker.tokens import TokenStore

    return TokenStore(get_runtime().redis)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else ""


@click.group("token")
def token_group() -> None:
    """API tokens for `axb api`: create (shown once), list, revoke."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--scopes",
    required=True,
    help="comma-separated: bind (enqueue), read (results), numbers (unmasked numbers),"
    " operate (unbind, extend)",
)
def token_create(name: str, scopes: str) -> None:
    """Create a token for NAME and print it once (only its SHA-256 is kept)."""
    from worker.tokens import TokenError

    try:
        secret, info = _store().create(name, scopes)
    except TokenError as err:
        err_console.print(f"[red]refused:[/red] {err}", highlight=False)
        sys.exit(2)
    click.echo(secret)
    err_console.print(
        f"token {info.name!r} (id {info.token_id}, scopes {','.join(sorted(info.scopes))}) created;"
        " it is shown only this once",
        highlight=False,
    )


@token_group.command("list")
@json_option("print JSON")
@click.option("--all", "show_all", is_flag=True, help="revoked tokens too")
def token_list(as_json: bool, show_all: bool) -> None:
    """The tokens: name, id, scopes, created, revoked (never the token itself)."""
    from rich.table import Table

    infos = _store().list(include_revoked=show_all)
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    table = Table("name", "id", "scopes", "created", "revoked")
    for i in infos:
        table.add_row(
            i.name, i.token_id, ",".join(sorted(i.scopes)), _when(i.created_at_ms), _when(i.revoked_at_ms)
        )
    out_console().print(table)


@token_group.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke NAME's token: every request with it gets 401 from now on."""
    from worker.tokens import TokenError

    try:
        info = _store().revoke(name)
    except TokenError as err:
        err_console.print(f"[red]refused:[/red] {err}", highlight=False)
        sys.exit(2)
    click.echo(f"revoked {info.name} (id {info.token_id})")
