"""How ``axb`` fails: one line on stderr, phone numbers masked, exit code 2, never a traceback.

- :class:`AxbGroup` is the command group's class: whatever a command raises (a project error,
  a bad flag, Redis unreachable, a file that cannot be written) ends as ONE line and exit
  code 2. Unexpected exceptions say so on that line; ``AXB_DEBUG=1`` shows their traceback.
- :class:`FiniteFloat` is the type of every number flag: ``nan``, ``inf`` and ``1e30`` are bad
  values like any other, not a crash three calls later.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from worker.errors import AxbError
from worker.masking import mask_text

EXIT_REFUSED = 2


def one_line(text: str) -> str:
    """``text`` on one line, phone numbers masked."""
    return " ".join(mask_text(text).split())


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print one masked line on stderr and exit with ``code`` (2: refused)."""
    click.echo(one_line(message), err=True)
    sys.exit(code)


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


class FiniteFloat(click.ParamType):  # type: ignore[type-arg]
    """A finite number within ``[minimum, maximum]``: refuses ``nan``, ``inf``, ``1e30``."""

    name = "number"

    def __init__(self, minimum: float, maximum: float, unit: str = "") -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.unit = unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            unit = f" {self.unit}" if self.unit else ""
            self.fail(f"must be a number from {self.minimum:g} to {self.maximum:g}{unit}", param, ctx)
        return number


# Minutes from now for --expires-in: more than the vendor's one-minute minimum is checked by the
# request model (isv.EXPIRE_DATE_ILLEGAL); this only keeps the date computable.
MINUTES_AHEAD = FiniteFloat(-525_600, 52_560_000, "minutes (100 years)")
WAIT_SECONDS = FiniteFloat(0, 86_400, "seconds")
