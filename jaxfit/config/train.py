"""The ``train`` section: what to train, the optimizer, its stopping rules, the loss."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator

from jaxfit.config.fields import MAX_STEPS_LIMIT, ParamName, PositiveFloat, Strict


class SGD(Strict):
    """Plain gradient descent: ``step size = learning_rate * gradient`` (the seed's)."""

    name: Literal["sgd"] = "sgd"


class Momentum(Strict):
    """SGD with momentum (heavy-ball, or Nesterov)."""

    name: Literal["momentum"] = "momentum"
    momentum: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.9
    nesterov: StrictBool = False


class Adam(Strict):
    """Adam (optax.adam)."""

    name: Literal["adam"] = "adam"
    b1: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-8


class LM(Strict):
    """Levenberg–Marquardt for the SSR (what scipy's curve_fit runs): damped
    Gauss–Newton steps, each kept only if the SSR does not grow. No learning rate."""

    name: Literal["lm"] = "lm"
    damping: PositiveFloat = 0.01
    """The starting damping λ."""


Optimizer = Annotated[Union[SGD, Momentum, Adam, LM], Field(discriminator="name")]


class TrainConfig(Strict):
    """What to train and how; the seed trains ``b3`` with sgd at 0.1 to |step| < 0.001."""

    trainable: list[ParamName] = Field(
        default_factory=lambda: ["b3"], json_schema_extra={"default": ["b3"]}, min_length=1
    )
    """Names of the model's parameters to train, or ``all`` (default: the network's
    output bias, every parameter of a function model)."""
    optimizer: Optimizer = Field(default_factory=SGD)
    learning_rate: PositiveFloat = 0.1
    tolerance: PositiveFloat = 0.001
    max_steps: Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_LIMIT)] = 1000
    ftol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: also converged when an accepted step changes the SSR by less than
    ``max(ftol, ftol·SSR)`` (Gpufit's rule, MINPACK's ftol); 0 (default): off."""
    xtol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: also converged when an accepted step has ``‖δ‖ < xtol·(xtol + ‖p‖)``
    (scipy's and MINPACK's xtol); 0 (default): off."""
    gtol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: converged where every column of the Jacobian is within ``gtol`` of
    orthogonal to the residuals (MINPACK's gtol); 0 (default): off."""
    absolute_sigma: StrictBool = False
    """``data.sigma`` are absolute standard deviations: the covariance is ``(JᵀJ)⁻¹``,
    not scaled by the reduced χ² (scipy's ``absolute_sigma``)."""
    loss: Literal["ssr", "poisson", "soft_l1", "huber", "cauchy", "arctan"] = "ssr"
    """What the fit minimises (``core.losses``): the SSR; the Poisson deviance (counts,
    maximum likelihood); or scipy's robust losses (with ``f_scale``)."""
    f_scale: PositiveFloat = 1.0
    """The robust losses' soft margin between inliers and outliers."""

    @field_validator("optimizer", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("trainable")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"names must not repeat (got {value})")
        return value
