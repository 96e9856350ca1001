"""Built-in models: lmfit's line shapes (formula for formula), dose-response and
kinetics, Gpufit's 2-D spots — each with a batched ``guess``, hints (bounds, starts,
ties) and derived quantities — composed with ``+ - * /`` and prefixes::

    from jaxfit.models import Gaussian, Linear
    model = Gaussian("p1_") + Gaussian("p2_") + Linear("bg_")
    model = model.with_params(p2_sigma={"expr": "p1_sigma"})
    fit = jaxfit.curve_fit(model, x, Y, result=True)       # p0 from the guess
    fit.values["p1_fwhm"], fit.errors["p1_fwhm"]

or from text (a config's ``model: {builtin: ...}``): ``parse("gaussian(p1_) + linear(bg_)")``.
"""

from __future__ import annotations

from jaxfit.models.library import ALIASES, BUILTINS, Hint
from jaxfit.models.model import Composite, Model, Plan, Shape, fit_function, names, plan
from jaxfit.models.spec import parse


def builtin(name: str, prefix: str = "", **options: object) -> Shape:
    """The built-in ``name`` with ``prefix`` (and options: ``form`` of a step,
    ``degree`` of a polynomial)."""
    return Shape(name, prefix, tuple(sorted(options.items())))


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _factory(name: str) -> object:
    def make(prefix: str = "", **options: object) -> Shape:
        return builtin(name, prefix, **options)

    make.__name__ = make.__qualname__ = _camel(name)
    canonical = ALIASES.get(name, name)
    about = BUILTINS[canonical].about if canonical in BUILTINS else "c0 + c1·x + … (option degree)"
    make.__doc__ = f"The built-in {canonical!r}: {about}."
    return make


FACTORIES = {_camel(n): _factory(n) for n in (*names(), *ALIASES)}
globals().update(FACTORIES)

__all__ = [
    "BUILTINS",
    "Composite",
    "Hint",
    "Model",
    "Plan",
    "Shape",
    "builtin",
    "fit_function",
    "names",
    "parse",
    "plan",
    *FACTORIES,
]
