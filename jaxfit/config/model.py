"""The ``model`` section: the network family, a built-in model (``jaxfit.models``) or a
function from an import path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_serializer, model_validator

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
    builtin: str | None = None
    """A built-in model by name, composed with ``+ - * /`` and prefixes, e.g.
    ``"gaussian(p1_) + gaussian(p2_) + linear(bg_)"`` (names only, never code); its
    guess gives the starts that ``params`` leaves out."""
    hints: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """A built-in model's parameter hints by name: ``expr`` (a tie: ``{expr: p1_sigma}``),
    ``vary``, ``min``, ``max``, ``value`` — or give them as ``params: {name: {...}}``."""

    @field_validator("builtin")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None:
            from jaxfit.models import parse

            parse(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        given = sorted({"hidden", "activation"} & self.model_fields_set)  # given, even at the default
        kind = "function" if self.function is not None else "builtin" if self.builtin is not None else None
        if kind and given:
            raise ValueError(
                f"{kind}: a {kind} model takes no {' or '.join(given)} (those are the network's)"
            )
        if self.function is not None and self.builtin is not None:
            raise ValueError("builtin: give a function or a builtin model, not both")
        if self.hints and self.builtin is None:
            raise ValueError("hints: only a builtin model takes hints")
        return self

    def built_in(self) -> Any:
        """The ``jaxfit.models`` model with its hints (None for the other kinds)."""
        if self.builtin is None:
            return None
        from jaxfit.models import parse

        return parse(self.builtin).with_params(**self.hints)

    @model_serializer(mode="wrap")
    def serialize_own_fields(self, dump: Any) -> dict[str, Any]:
        # a function model's dump names no network fields (so that it validates again)
        out = dump(self)
        if self.function is None and self.builtin is None:
            return {k: v for k, v in out.items() if k not in ("function", "guess", "builtin", "hints")}
        return {k: out[k] for k in ("function", "guess", "builtin", "hints") if out[k]}
