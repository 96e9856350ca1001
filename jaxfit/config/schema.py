"""The whole config: every section, each defaulting to the seed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PrivateAttr, StrictInt

from jaxfit.config.batch import BatchConfig, ReportConfig, StartsConfig
from jaxfit.config.data import DataConfig
from jaxfit.config.fields import Bound, FiniteFloat, ParamName, Strict
from jaxfit.config.model import ModelConfig
from jaxfit.config.train import TrainConfig
from jaxfit.core.example import SEED_PARAMS


class Config(Strict):
    """A whole jaxfit run. Every field defaults to the seed."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    params: dict[ParamName, FiniteFloat] = Field(
        default_factory=lambda: dict(SEED_PARAMS), json_schema_extra={"default": SEED_PARAMS}
    )
    """Starting values by name (the model's defaults for names left out)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    precision: Literal["float32", "float64"] = "float32"
    report: ReportConfig = Field(default_factory=ReportConfig)
    starts: StartsConfig | None = None
    bounds: dict[ParamName, tuple[Bound, Bound]] = Field(default_factory=dict)
    """``{name: [lower, upper]}`` for trained parameters (null: unbounded on that side);
    each step is projected into the box."""
    shared: list[ParamName] = Field(default_factory=list)
    """Trained parameters common to every data set of grouped data: a global fit, one
    problem whose other trained parameters are local to each set (``jaxfit.run.globalrun``)."""
    batch: BatchConfig | None = None
    """Absent: a single fit with a step-by-step trace. Present: many fits."""
    devices: Annotated[StrictInt, Field(ge=1)] | None = None
    """Use at most this many local devices for a batch (default: all)."""
    block_size: Annotated[StrictInt, Field(ge=1, le=2**24)] | None = None
    """Fits per vmapped block, or lanes of a streamed batch (default: by platform and
    problem; on CPU 16384 for one trainable parameter, else 128)."""
    _model: Any = PrivateAttr(default=None)
    _starts: Any = PrivateAttr(default=None)
    _start_bounds: Any = PrivateAttr(default=None)

    @property
    def start_values(self) -> dict[str, Any] | None:
        """``starts``' values by parameter, float64 ``(groups,)`` in data-set order (None without)."""
        return self._starts

    def bounds_by_set(self) -> dict[str, tuple[Any, Any]]:
        """Each bounded parameter's ``(lower, upper)``: float64 ``(groups,)`` arrays where
        the starts table has ``P.lower``/``P.upper`` columns (which replace ``bounds``
        on their side), else floats (±inf: none). Empty without bounds."""
        inf = math.inf
        out: dict[str, tuple[Any, Any]] = {
            n: (-inf if lo is None else lo, inf if hi is None else hi) for n, (lo, hi) in self.bounds.items()
        }
        for column, values in (self._start_bounds or {}).items():
            name, side = column.rsplit(".", 1)
            lo, hi = out.get(name, (-inf, inf))
            out[name] = (values, hi) if side == "lower" else (lo, values)
        return out

    @property
    def core_model(self) -> Any:
        """The model as the engine takes it (``core.model.Network`` or ``Function``)."""
        if self._model is None:
            from jaxfit.core.model import SEED_MODEL, Network

            m = self.model
            self._model = SEED_MODEL if m == ModelConfig() else Network(m.hidden, m.activation)
        return self._model

    @property
    def names(self) -> tuple[str, ...]:
        """The model's parameter names, in order."""
        return tuple(self.params)

    @property
    def is_batch(self) -> bool:
        """Many fits: a ``batch`` section, or data split into groups."""
        return self.batch is not None or self.data.grouped

    @property
    def per_group(self) -> int:
        """Fits per data set: the batch's fits (1 without a batch)."""
        return self.batch.fits if self.batch else 1

    @property
    def fits(self) -> int:
        """Fits in the run: data sets times the fits per data set."""
        return self.data.groups * self.per_group


ConfigLike = Union[Config, Mapping[str, Any], str, Path]
"""What the API takes as a config: a ``Config``, a mapping, or a YAML file's path."""


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file."""
    return Config.model_json_schema()
