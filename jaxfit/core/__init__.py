"""The pure core: the model, the optimizers, the fit engine and status codes.

Pure JAX and plain Python only: no I/O, no pydantic, no configs.
"""
