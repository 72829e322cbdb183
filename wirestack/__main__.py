"""`python -m wirestack`: the command line (wirestack.cli)."""

from .cli import run

run()
