"""How ``axb`` fails: one line on stderr, phone numbers masked, exit code 2, never a traceback.

- :class:`AxbGroup` is the command group's class: whatever a command raises (a project error,
  a bad flag, Redis unreachable, a file that cannot be written) ends as ONE line and exit
  code 2. Unexpected exceptions say so on that line; ``AXB_DEBUG=1`` shows their traceback.
- :func:`fail_invalid` and :func:`refuse` say why a request was refused (the field, the vendor
  code it would cause), as JSON too when the command got ``--json``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.markup import escape

from worker.cli.output import emit, err_console
from worker.errors import AxbError, InvalidRequestError
from worker.masking import mask_text

EXIT_REFUSED = 2


def one_line(text: str) -> str:
    """``text`` on one line, phone numbers masked."""
    return " ".join(mask_text(text).split())


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print one masked line on stderr and exit with ``code`` (2: refused)."""
    click.echo(one_line(message), err=True)
    sys.exit(code)


def fail_invalid(err: InvalidRequestError, as_json: bool = True) -> NoReturn:
    """Refuse a request that does not validate: its problems as JSON (with ``as_json``) on
    stdout, one line on stderr, exit 2."""
    payload = {
        "Code": err.code,
        "Message": str(err),
        "Problems": [{"field": p.field, "code": p.code, "reason": p.reason} for p in err.problems],
    }
    if as_json:
        emit(payload, False)
    err_console.print(f"[red]invalid request:[/red] {escape(mask_text(str(err)))}", highlight=False)
    sys.exit(EXIT_REFUSED)


def refuse(err: AxbError, as_json: bool) -> NoReturn:
    """Refuse what the producer API refused: :func:`fail_invalid` for a request that does not
    validate, else one ``refused:`` line; exit 2 either way."""
    if isinstance(err, InvalidRequestError):
        fail_invalid(err, as_json)
    fail(f"refused: {err}")


def debug_enabled() -> bool:
    return os.environ.get("AXB_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def describe(exc: BaseException) -> str:
    """The one line for an exception raised by a command."""
    import redis
    from pydantic import ValidationError

    if isinstance(exc, AxbError):
        return f"error: {exc}"
    if isinstance(exc, redis.RedisError):
        return f"Redis error ({type(exc).__name__}): {exc}"
    if isinstance(exc, ValidationError):  # settings from the environment
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
        return f"bad settings: {problems}"
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc} ({exc.filename})" if exc.filename else f"error: {exc}"
    return f"unexpected {type(exc).__name__}: {exc} (set AXB_DEBUG=1 for the traceback)"


class AxbGroup(click.Group):
    """The ``axb`` group: every failure is one line with exit code 2 (see the module doc)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        except click.ClickException as exc:
            usage = isinstance(exc, click.UsageError)
            fail(f"{'Usage error' if usage else 'error'}: {exc.format_message()}", exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except SystemExit:
            raise
        except Exception as exc:
            if debug_enabled():
                raise
            fail(describe(exc))
