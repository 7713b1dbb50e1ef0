"""``python -m worker.cli ...``: the same ``axb`` command, every command registered."""

from worker.cli import main

main()
