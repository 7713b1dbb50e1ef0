"""A local Dypls (Alibaba Cloud privacy number) endpoint for tests, demos and load runs.

It verifies both signature styles with :mod:`worker.vendor` (signing), validates like the vendor, keeps
number pools and bindings, injects faults on demand, and records every call in a ledger.

    app = create_app(SimulatorConfig(pool_size=10))
    sim = app.state.simulator            # a Simulator: faults, clock, ledger, bindings
    sim.set_faults(error_rate=0.2, latency_ms=30)
"""

from worker.simulator.app import SimulatedConnectionReset, create_app, run_simulator, serve
from worker.simulator.config import DEFAULT_POOL_KEY, Faults, SimulatorConfig
from worker.simulator.state import Simulator

__all__ = [
    "DEFAULT_POOL_KEY",
    "Faults",
    "SimulatedConnectionReset",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "run_simulator",
    "serve",
]
