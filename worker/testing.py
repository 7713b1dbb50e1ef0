"""The one public switch for fault injection: what the chaos and crash tests make a worker do.

As stamina's ``set_testing()``: the switch is read once per process (from the environment the
first time it is asked for, or set by :func:`set_testing`), never on every attempt.

- ``AXB_FAULT_KILL_ON_KEY=<key>``: the process dies (SIGKILL) in the middle of that key's
  attempt, every time: a poison message (tests/test_chaos.py). Off unless set.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

__all__ = ["Faults", "faults", "kill_if_targeted", "set_testing"]


@dataclass(frozen=True)
class Faults:
    """The faults this process injects (empty: none, the production case)."""

    kill_on_key: str = ""


_faults: Faults | None = None


def set_testing(*, kill_on_key: str = "") -> None:
    """Set the faults this process injects, instead of reading them from the environment."""
    global _faults
    _faults = Faults(kill_on_key=kill_on_key)


def faults() -> Faults:
    """The faults in force: set by :func:`set_testing`, else read once from the environment."""
    global _faults
    if _faults is None:
        _faults = Faults(kill_on_key=os.environ.get("AXB_FAULT_KILL_ON_KEY", ""))
    return _faults


def kill_if_targeted(key: str) -> None:
    """Die (SIGKILL) here if ``key`` is the one the switch names: a delivery that never finishes."""
    target = faults().kill_on_key
    if target and target == key:
        os.kill(os.getpid(), signal.SIGKILL)
