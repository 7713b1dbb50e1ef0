"""``axb simulator``: run the local Dypls simulator (see :mod:`worker.simulator`)."""

from __future__ import annotations

from typing import Any

import click

from worker.cli.options import FiniteFloat


@click.command("simulator")
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
@click.option(
    "--max-pairs-per-x",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="A-B pairs one X number carries at most",
)
@click.option(
    "--throttle-style",
    default="flow_limit",
    show_default=True,
    type=click.Choice(["flow_limit", "gateway"]),
    help="flow_limit: isv.FLOW_LIMIT (HTTP 200); gateway: Throttling.User (400)",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn and simulator log level",
)
def simulator_command(host: str, port: int, log_level: str, **config: Any) -> None:
    """Run the local Dypls simulator (signatures, validation, number pools, faults, ledger)."""
    from worker.simulator import run_simulator

    run_simulator(host=host, port=port, log_level=log_level, **config)
