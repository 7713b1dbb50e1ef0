"""The flags several ``axb`` commands share: number types, ``--json``, ``--show-numbers``, ``--wait``.

- :class:`FiniteFloat` is the type of every number flag: ``nan``, ``inf`` and ``1e30`` are bad
  values like any other, not a crash three calls later.
- :func:`follow_options` is ``--wait/--timeout/--json/--show-numbers``, the four flags of every
  command that enqueues (``enqueue``, ``unbind``, ``extend``).
- :func:`expires_in_option` and :func:`expiration_in` turn ``--expires-in MINUTES`` into the
  vendor's ``Expiration`` text (China Standard Time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

CST = timedelta(hours=8)  # China Standard Time, the vendor's clock (UTC+8)


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


def expiration_in(minutes: float) -> str:
    """The ``Expiration`` text (``yyyy-MM-dd HH:mm:ss``, UTC+8) ``minutes`` from now."""
    return (datetime.now(UTC) + CST + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def expires_in_option(help_: str) -> Callable[[F], F]:
    """``--expires-in MINUTES`` (a float, or None when not given)."""
    return click.option("--expires-in", type=MINUTES_AHEAD, default=None, metavar="MINUTES", help=help_)


def json_option(help_: str | None = None) -> Callable[[F], F]:
    """``--json`` into the parameter ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_)


def show_numbers_option(help_: str | None = None) -> Callable[[F], F]:
    """``--show-numbers``: print phone numbers unmasked (they are masked otherwise)."""
    return click.option("--show-numbers", is_flag=True, help=help_)


def follow_options(wait_help: str) -> Callable[[F], F]:
    """``--wait``, ``--timeout``, ``--json`` and ``--show-numbers``: how an enqueued request is shown.

    The command receives ``wait``, ``timeout``, ``as_json`` and ``show_numbers``; pass them to
    :func:`worker.cli.output.report_handle`."""

    def decorate(func: F) -> F:
        func = show_numbers_option()(func)
        func = json_option("print JSON")(func)
        func = click.option(
            "--timeout", default=30.0, show_default=True, type=WAIT_SECONDS, help="seconds to --wait"
        )(func)
        return click.option("--wait", is_flag=True, help=wait_help)(func)

    return decorate
