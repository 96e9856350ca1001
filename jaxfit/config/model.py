"""The ``model`` section: the network family or a function from an import path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, model_serializer, model_validator

from jaxfit.config.fields import Strict

MAX_HIDDEN = 256


class ModelConfig(Strict):
    """The model: the network family (``hidden`` nodes of ``activation``; the seed's by
    default) or a pure JAX ``function`` from an import path (``"module:function"``)."""

    hidden: Annotated[StrictInt, Field(ge=1, le=MAX_HIDDEN)] = 2
    activation: Literal["softplus", "relu", "tanh", "sigmoid"] = "softplus"
    function: str | None = None
    """``predict(x, p1, p2, ...)`` for one scalar x: a config that names one is code."""
    guess: str | None = None
    """``guess(x, y) -> {name: value}``: each data set's starting values from its data
    (lmfit's ``Model.guess``), run on the device for every data set (code, as ``function``)."""

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        given = sorted({"hidden", "activation"} & self.model_fields_set)  # given, even at the default
        if self.function is not None and given:
            raise ValueError(
                f"function: a function model takes no {' or '.join(given)} (those are the network's)"
            )
        return self

    @model_serializer(mode="wrap")
    def serialize_own_fields(self, dump: Any) -> dict[str, Any]:
        # a function model's dump names no network fields (so that it validates again)
        out = dump(self)
        return {k: out[k] for k in ("function", "guess") if out[k] is not None} if self.function else out
