"""Per-fit outcome codes. Status is data (a small int per fit), never an exception."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """How a fit ended (``RUNNING`` only while it is still in the loop); each code
    means one thing."""

    RUNNING = 0
    CONVERGED = 1
    """Every trainable parameter's |step size| fell below ``tolerance`` (or a step met
    ``ftol`` / ``xtol`` / ``gtol``), and for Levenberg–Marquardt at a stationary point:
    no column of the Jacobian is more than ``STATIONARY`` from orthogonal to the residuals."""
    MAX_STEPS = 2
    """``max_steps`` steps were taken without converging."""
    DIVERGED = 3
    """The loss, a gradient or a parameter became non-finite (NaN or inf)."""
    TOO_FEW_POINTS = 4
    """Not fitted: its data set has fewer real points than trainable parameters."""
    NOT_RUN = 5
    """Not run (yet): outside the ``ranges`` a batch was asked to run."""
    PADDING = 6
    """A lane past the end of the batch, holding no fit (never in a result)."""
    STALLED = 7
    """The step became too small to go on while the fit is not at a stationary point
    (Levenberg–Marquardt: the gradient, scaled by the curvature, is not small): never
    ``CONVERGED``; try another start, float64, or a looser ``tolerance``."""

    def __str__(self) -> str:
        return self.label

    __format__ = object.__format__  # f"{status}" too: its label, not its number

    @property
    def label(self) -> str:
        """Lower-case name used in JSON and tables, e.g. ``"converged"``."""
        return self.name.lower()
