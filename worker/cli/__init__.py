"""``axb``: the one command line for producers, workers, the simulator and on-call.

One module per command group; each defines its click command (``<name>_command``) or group
(``<name>_group``) and knows nothing of :data:`main`. This file registers them, one line each.
To add a command group: write ``worker/cli/<name>.py`` with ``@click.group("<name>")`` on
``<name>_group``, import it below and add ``main.add_command(<name>_group)``.

Phone numbers are masked in every output unless ``--show-numbers`` is given. Failures are one
line on stderr with exit code 2 (:mod:`worker.cli.errors`). ``axb`` and ``python -m worker.cli``
are the same command.
"""

from __future__ import annotations

import click

from worker.cli.api import api_command
from worker.cli.backfill import backfill_command
from worker.cli.bind import bind_options, bind_params, call_group, enqueue_command, result_command
from worker.cli.console import console_command
from worker.cli.data import forget_command, keygen_command, rekey_command
from worker.cli.dlq import dlq_group
from worker.cli.errors import AxbGroup, fail, one_line
from worker.cli.lifecycle import extend_command, unbind_command
from worker.cli.options import FiniteFloat, follow_options
from worker.cli.orphans import orphans_group
from worker.cli.output import err_console, out_console
from worker.cli.simulator import simulator_command
from worker.cli.status import status_command
from worker.cli.tokens import token_group
from worker.cli.worker import worker_alive_command, worker_command

__all__ = [
    "AxbGroup",
    "FiniteFloat",
    "bind_options",
    "bind_params",
    "err_console",
    "fail",
    "follow_options",
    "main",
    "one_line",
    "out_console",
]


@click.group(cls=AxbGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Bind Dypls privacy numbers (BindAxb) through a reliable, rate-limited task queue."""


main.add_command(api_command)
main.add_command(backfill_command)
main.add_command(call_group)
main.add_command(console_command)
main.add_command(dlq_group)
main.add_command(enqueue_command)
main.add_command(extend_command)
main.add_command(forget_command)
main.add_command(keygen_command)
main.add_command(orphans_group)
main.add_command(rekey_command)
main.add_command(result_command)
main.add_command(simulator_command)
main.add_command(status_command)
main.add_command(token_group)
main.add_command(unbind_command)
main.add_command(worker_command)
main.add_command(worker_alive_command)
