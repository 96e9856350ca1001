"""Parameter names and default starting values of the network family (plain Python,
so configs validate without importing JAX)."""

from __future__ import annotations

from jaxfit.core.example import SEED_PARAMS


def network_names(hidden: int) -> tuple[str, ...]:
    """Parameter names of the network with ``hidden`` nodes: ``w_i, b_i`` per node,
    then the output weights ``w(H+1)..w(2H)`` and the output bias ``b(H+1)``. For two
    nodes, the seed's ``w1 b1 w2 b2 w3 w4 b3``."""
    per_node = tuple(name for i in range(1, hidden + 1) for name in (f"w{i}", f"b{i}"))
    return per_node + tuple(f"w{hidden + i}" for i in range(1, hidden + 1)) + (f"b{hidden + 1}",)


def network_defaults(hidden: int) -> dict[str, float]:
    """Starting values of the parameters a config leaves out. Two nodes: the seed's.
    Otherwise input weights 1, hidden biases evenly spread over [-1, 1] (0 for one
    node), so that the nodes differ; output weights ``1/H``; output bias 0."""
    if hidden == 2:
        return dict(SEED_PARAMS)
    values = {}
    for i in range(1, hidden + 1):
        values[f"w{i}"] = 1.0
        values[f"b{i}"] = 0.0 if hidden == 1 else -1.0 + 2.0 * (i - 1) / (hidden - 1)
        values[f"w{hidden + i}"] = 1.0 / hidden
    values[f"b{hidden + 1}"] = 0.0
    return {n: values[n] for n in network_names(hidden)}
