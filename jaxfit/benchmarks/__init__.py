"""Benchmarks against peers measured in the same run (``python -m jaxfit bench``,
``python -m jaxfit startup``). Not imported by the runtime."""
