"""``axb simulator``: run the Dypls simulator from the command line.

:func:`run_simulator` is the plain entry point (``worker.cli`` calls it); :func:`simulator` is the
same as a Typer command function, for registration with ``app.command()(simulator)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from worker.simulator.config import DEFAULT_POOL_SIZE, THROTTLE_STYLES, SimulatorConfig, ThrottleStyle


def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 8088,
    latency_ms: float = 0.0,
    jitter_ms: float = 0.0,
    error_rate: float = 0.0,
    qps_limit: int | None = None,
    seed: int | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_pairs_per_x: int = 200,
    throttle_style: ThrottleStyle = "flow_limit",
    log_level: str = "info",
) -> None:
    """Build a :class:`SimulatorConfig` from the options and serve it until interrupted."""
    from worker.simulator.app import serve

    config = SimulatorConfig(
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_rate=error_rate,
        qps_limit=qps_limit,
        seed=seed,
        pool_size=pool_size,
        max_pairs_per_x=max_pairs_per_x,
        throttle_style=throttle_style,
    )
    config.validate()
    serve(config, host, port, log_level=log_level)


def simulator(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8088,
    latency_ms: Annotated[float, typer.Option(help="added latency per BindAxb call")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="uniform +/- jitter on the latency")] = 0.0,
    error_rate: Annotated[
        float, typer.Option(help="fraction of BindAxb calls answered with a transient code")
    ] = 0.0,
    qps_limit: Annotated[int | None, typer.Option(help="throttle above this many calls per second")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for latency jitter and fault draws")] = None,
    pool_size: Annotated[
        int, typer.Option(help="X numbers in the default pool FC100000001")
    ] = DEFAULT_POOL_SIZE,
    max_pairs_per_x: Annotated[int, typer.Option(help="A-B pairs one X number carries at most")] = 200,
    throttle_style: Annotated[
        str, typer.Option(help="flow_limit: isv.FLOW_LIMIT (HTTP 200); gateway: Throttling.User (400)")
    ] = "flow_limit",
    log_level: Annotated[str, typer.Option(help="uvicorn and simulator log level")] = "info",
) -> None:
    """Run the local Dypls simulator (signatures, validation, number pools, faults, ledger)."""
    if throttle_style not in THROTTLE_STYLES:
        raise typer.BadParameter(
            f"must be one of {', '.join(THROTTLE_STYLES)}", param_hint="--throttle-style"
        )
    run_simulator(
        host=host,
        port=port,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_rate=error_rate,
        qps_limit=qps_limit,
        seed=seed,
        pool_size=pool_size,
        max_pairs_per_x=max_pairs_per_x,
        throttle_style="gateway" if throttle_style == "gateway" else "flow_limit",
        log_level=log_level,
    )
