"""The seed's numbers: the network's starting values and the three observations.

Plain Python (no JAX), so configs validate without importing JAX.
"""

from __future__ import annotations

PARAM_NAMES: tuple[str, ...] = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
"""The seven parameters of the network, in a fixed order."""

SEED_PARAMS: dict[str, float] = {
    "w1": 3.34,
    "b1": -1.43,
    "w2": -3.53,
    "b2": 0.57,
    "w3": -1.22,
    "w4": -2.30,
    "b3": 0.0,
}
"""The seed's starting values (b3 is the one it fits)."""

SEED_X: tuple[float, ...] = (0.0, 0.5, 1.0)
"""The seed's dosages."""
SEED_Y: tuple[float, ...] = (0.0, 1.0, 0.0)
"""The seed's observed efficacies."""

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "lm")
"""Optimizer names accepted by the config."""
