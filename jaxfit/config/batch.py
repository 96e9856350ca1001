"""The ``batch`` section (grids, draws, repeats), the ``starts`` table and ``report``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    model_validator,
)

from jaxfit.config.fields import MAX_FITS, MAX_STEPS_LIMIT, FiniteFloat, ParamName, PositiveFloat, Strict


class StartsConfig(Strict):
    """A table of starting values, one row per data set: a ``group`` column of the data's
    labels, and a column per trainable parameter it sets (the others keep ``params``)."""

    file: str
    group: str = "group"


class ReportConfig(Strict):
    """What a fit reports beyond its parameters (standard errors and statistics always)."""

    confidence: Annotated[StrictFloat, Field(gt=0, lt=1)] = 0.95
    """Level of the parameters' confidence intervals and of the curve's bands."""
    covariance: StrictBool = False
    """Keep each fit's full covariance matrix in a batch (k² numbers per fit; a single
    fit always has it)."""
    statistics: StrictBool = True
    """Compute a batch's standard errors and statistics (false: skip the pass, for
    sweeps whose error bars nobody reads: W1's million seed fits run in half the time)."""
    intervals: Literal["linear", "profile"] = "linear"
    """A single fit's intervals: Student's t on the covariance (``linear``), or where
    the χ² profile crosses the level (``profile``, lmfit's ``conf_interval``)."""


class Linspace(Strict):
    """``num`` evenly spaced values from ``start`` to ``stop`` (a grid axis)."""

    linspace: tuple[FiniteFloat, FiniteFloat, Annotated[StrictInt, Field(ge=1, le=MAX_FITS)]]


class Values(Strict):
    """Explicit values (a grid axis)."""

    values: list[FiniteFloat] = Field(min_length=1, max_length=1_000_000)


class NormalDraw(Strict):
    mean: FiniteFloat = 0.0
    std: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)] = 1.0


class UniformDraw(Strict):
    low: FiniteFloat = -1.0
    high: FiniteFloat = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> UniformDraw:
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        return self


class Normal(Strict):
    """One draw per fit from N(mean, std^2), from ``batch.seed`` and the fit's index."""

    normal: NormalDraw


class Uniform(Strict):
    """One draw per fit from U(low, high), from ``batch.seed`` and the fit's index."""

    uniform: UniformDraw


INIT_KINDS = {"linspace": Linspace, "values": Values, "normal": Normal, "uniform": Uniform}


def init_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(k for k, m in INIT_KINDS.items() if isinstance(value, m))
    keys = list(value) if isinstance(value, Mapping) else []
    return keys[0] if len(keys) == 1 and keys[0] in INIT_KINDS else None


InitSpec = Annotated[
    Union[tuple(Annotated[model, Tag(kind)] for kind, model in INIT_KINDS.items())],  # type: ignore[misc]
    Discriminator(
        init_kind,
        custom_error_type="init_spec",
        custom_error_message="expected exactly one of linspace: [start, stop, num], "
        "values: [...], normal: {mean, std}, uniform: {low, high}",
    ),
]
PositiveList = Annotated[list[PositiveFloat], Field(min_length=1, max_length=1_000_000)]


class BatchConfig(Strict):
    """Many fits at once.

    Grid axes (``linspace``/``values`` inits, and ``learning_rate``/``tolerance``/
    ``max_steps`` lists) combine as a cartesian product, in the order ``w1 b1 w2 b2
    w3 w4 b3 learning_rate tolerance max_steps`` with the last varying fastest. Each
    grid point is fitted ``count`` times; random draws (``normal``/``uniform``) are
    made per fit. So the number of fits is ``product(grid sizes) * count``.
    """

    init: dict[ParamName, InitSpec] = Field(default_factory=dict)
    learning_rate: PositiveList | None = None
    tolerance: PositiveList | None = None
    max_steps: (
        Annotated[list[Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_LIMIT)]], Field(min_length=1)] | None
    ) = None
    seed: Annotated[StrictInt, Field(ge=0, lt=2**32)] = 0
    count: Annotated[StrictInt, Field(ge=1, le=MAX_FITS)] = 1

    @model_validator(mode="after")
    def _indexable(self) -> BatchConfig:
        if self.fits > MAX_FITS:
            raise ValueError(f"the batch has {self.fits:,} fits; at most {MAX_FITS:,} are allowed")
        return self

    @property
    def grid(self) -> list[tuple[str, int]]:
        """Grid axes as ``(name, size)`` (parameters as given, then hyperparameters)."""
        axes = []
        for name, spec in self.init.items():
            if isinstance(spec, Linspace):
                axes.append((name, spec.linspace[2]))
            elif isinstance(spec, Values):
                axes.append((name, len(spec.values)))
        for name in ("learning_rate", "tolerance", "max_steps"):
            values = getattr(self, name)
            if values is not None:
                axes.append((name, len(values)))
        return axes

    @property
    def fits(self) -> int:
        """Number of fits in the batch."""
        return math.prod(size for _, size in self.grid) * self.count
