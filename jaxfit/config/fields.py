"""The building blocks of every config section: strict models, finite numbers,
parameter names and the limits they respect."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

MAX_STEPS_LIMIT = 10**9
"""Largest accepted ``train.max_steps``."""
MAX_INLINE = 1_000_000
"""Most inline data points (``data.x``/``data.y`` lists)."""
MAX_FITS = 2**31 - 2**26
"""Largest batch: fit indices are int32 on the device, with room for padding."""

FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Bound = Annotated[float, Field(allow_inf_nan=False)] | None
"""A parameter's name; which names exist depends on the model (checked in ``validate``)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
