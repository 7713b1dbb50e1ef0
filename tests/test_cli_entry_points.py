"""`axb` and `python -m worker.cli` are the same command line, with every command registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.pipeline_fixture import ROOT, axb_env
from worker.cli import main


def listed_commands(help_text: str) -> set[str]:
    """The command names in the `Commands:` section of a click group's --help."""
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.split()}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, env=axb_env(), cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_axb_and_python_dash_m_list_every_registered_command() -> None:
    """Both entry points list the same commands as worker.cli.main (unbind, extend, status too)."""
    registered = set(main.commands)
    assert {"unbind", "extend", "status", "simulator", "token", "api"} <= registered
    axb = str(Path(sys.executable).parent / "axb")
    for argv in ([sys.executable, "-m", "worker.cli", "--help"], [axb, "--help"]):
        out = run(argv)
        assert out.returncode == 0, out.stderr
        assert listed_commands(out.stdout) == registered, argv


def test_a_command_registered_in_its_own_module_runs_under_python_dash_m() -> None:
    """`python -m worker.cli status --help` prints the status command's usage, not "No such command"."""
    out = run([sys.executable, "-m", "worker.cli", "status", "--help"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: python -m worker.cli status [OPTIONS]"), out.stdout
