"""The command line, ``python -m jaxfit``: commands, warm start, compilation cache, progress."""

from jaxfit.cli.main import main

__all__ = ["main"]
