"""The built-in models: each line shape with its parameters, hints (bounds, default
values, ties — lmfit's ``set_param_hint``), its ``guess`` and its derived quantities
(fwhm, height, EC50 …, functions of the parameters whose errors follow from the
covariance)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxfit.models import guesses
from jaxfit.models import lineshapes as ls
from jaxfit.models.faddeeva import wofz

INF = float("inf")
TAU = 2 * float(np.pi)
FWHM_GAUSS = float(2 * np.sqrt(2 * np.log(2)))


class Hint(NamedTuple):
    """One parameter's defaults: a start ``value`` (None: the guess or the shape's
    default), bounds, whether it is fitted (``vary``) and a tie (``expr``: its value
    is that expression of the others, never fitted)."""

    value: float | None = None
    min: float = -INF
    max: float = INF
    vary: bool = True
    expr: str | None = None

    def merged(self, **changes: Any) -> Hint:
        return self._replace(**changes)


class Builtin(NamedTuple):
    shape: Callable[..., Any]
    hints: dict[str, Hint]
    guess: Callable[..., dict] | None
    derived: dict[str, Callable[[dict], Any]]
    dims: int = 0
    about: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(
            p.name
            for p in list(inspect.signature(self.shape).parameters.values())[1:]
            if p.name != "form" and p.kind == p.POSITIONAL_OR_KEYWORD
        )

    def defaults(self) -> dict[str, float]:
        sig = inspect.signature(self.shape).parameters
        return {n: float(sig[n].default) for n in self.params}


POSITIVE = Hint(min=0.0)


def _peak_derived(fwhm: Callable[[dict], Any], height: Callable[[dict], Any]) -> dict:
    return {"fwhm": fwhm, "height": height}


def _voigt_height(p: dict) -> Any:
    return (p["amplitude"] / jnp.maximum(ls.TINY, p["sigma"] * ls.S2PI)) * jnp.real(
        wofz(1j * p["gamma"] / jnp.maximum(ls.TINY, p["sigma"] * ls.S2))
    )


def _voigt_fwhm(p: dict) -> Any:
    return 1.0692 * p["gamma"] + jnp.sqrt(0.8664 * p["gamma"] ** 2 + 5.545083 * p["sigma"] ** 2)


def _gaussian2d_guess(x: Any, y: Any, mask: Any) -> dict:
    out = guesses.spot(x, y, mask)
    out["amplitude"] = out["amplitude"] * 2 * np.pi * out["sigmax"] * out["sigmay"]
    return out


PEAK = {"sigma": POSITIVE}
SPOT = {"sigma": POSITIVE, "sigma_x": POSITIVE, "sigma_y": POSITIVE}

BUILTINS: dict[str, Builtin] = {
    "constant": Builtin(ls.constant, {}, guesses.constant, {}, about="c"),
    "linear": Builtin(ls.linear, {}, guesses.linear, {}, about="slope·x + intercept"),
    "parabolic": Builtin(ls.parabolic, {}, guesses.parabolic, {}, about="a·x² + b·x + c"),
    "exponential": Builtin(ls.exponential, {}, guesses.exponential, {}, about="amplitude·exp(−x/decay)"),
    "powerlaw": Builtin(ls.powerlaw, {}, guesses.powerlaw, {}, about="amplitude·x^exponent"),
    "gaussian": Builtin(
        ls.gaussian,
        PEAK,
        guesses.scaled_peak(),
        _peak_derived(
            lambda p: FWHM_GAUSS * p["sigma"],
            lambda p: p["amplitude"] / jnp.maximum(ls.TINY, ls.S2PI * p["sigma"]),
        ),
        about="area-normalised Gaussian",
    ),
    "lorentzian": Builtin(
        ls.lorentzian,
        PEAK,
        guesses.scaled_peak(1.25),
        _peak_derived(
            lambda p: 2.0 * p["sigma"], lambda p: p["amplitude"] / jnp.maximum(ls.TINY, ls.PI * p["sigma"])
        ),
        about="area-normalised Lorentzian",
    ),
    "split_lorentzian": Builtin(
        ls.split_lorentzian,
        {"sigma": POSITIVE, "sigma_r": POSITIVE},
        lambda x, y, m: {**guesses.peak(x, y, m, 1.25), "sigma_r": guesses.peak(x, y, m, 1.25)["sigma"]},
        _peak_derived(
            lambda p: p["sigma"] + p["sigma_r"],
            lambda p: 2 * p["amplitude"] / ls.PI / jnp.maximum(ls.TINY, p["sigma"] + p["sigma_r"]),
        ),
        about="Lorentzian with two half-widths",
    ),
    "voigt": Builtin(
        ls.voigt,
        {"sigma": POSITIVE, "gamma": Hint(expr="sigma")},
        guesses.scaled_peak(1.5, 0.65),
        _peak_derived(_voigt_fwhm, _voigt_height),
        about="Gaussian ⊗ Lorentzian (Faddeeva); gamma tied to sigma unless freed",
    ),
    "pvoigt": Builtin(
        ls.pvoigt,
        {"sigma": POSITIVE, "fraction": Hint(0.5, 0.0, 1.0)},
        guesses.scaled_peak(1.25, fraction=0.5),
        _peak_derived(
            lambda p: 2.0 * p["sigma"],
            lambda p: (
                (1 - p["fraction"])
                * p["amplitude"]
                / jnp.maximum(ls.TINY, p["sigma"] * np.sqrt(np.pi / np.log(2)))
                + p["fraction"] * p["amplitude"] / jnp.maximum(ls.TINY, ls.PI * p["sigma"])
            ),
        ),
        about="pseudo-Voigt: Gaussian and Lorentzian of one fwhm",
    ),
    "moffat": Builtin(
        ls.moffat,
        PEAK,
        lambda x, y, m: {**guesses.peak(x, y, m, 0.5), "beta": jnp.ones((), y.dtype)},
        _peak_derived(
            lambda p: 2 * p["sigma"] * jnp.sqrt(2 ** (1.0 / jnp.maximum(1e-3, p["beta"])) - 1),
            lambda p: p["amplitude"],
        ),
        about="Moffat (PSF) profile",
    ),
    "pearson4": Builtin(
        ls.pearson4,
        {"sigma": POSITIVE, "expon": Hint(1.5, 0.5 + ls.TINY, 1000.0), "skew": Hint(0.0, -1000.0, 1000.0)},
        guesses.scaled_peak(expon=1.5, skew=0.0),
        {},
        about="Pearson type IV (skewed)",
    ),
    "pearson7": Builtin(
        ls.pearson7,
        {"sigma": POSITIVE, "expon": Hint(1.5, max=100.0)},
        guesses.scaled_peak(expon=1.5),
        {"fwhm": lambda p: 2 * p["sigma"] * jnp.sqrt(2 ** (1 / p["expon"]) - 1)},
        about="Pearson type VII",
    ),
    "students_t": Builtin(
        ls.students_t, {"sigma": Hint(min=0.0, max=100.0)}, guesses.scaled_peak(), {}, about="Student's t"
    ),
    "breit_wigner": Builtin(
        ls.breit_wigner, PEAK, guesses.scaled_peak(q=1.0), {}, about="Breit–Wigner–Fano resonance"
    ),
    "lognormal": Builtin(
        ls.lognormal,
        PEAK,
        lambda x, y, m: {
            "amplitude": jnp.ones((), y.dtype),
            "center": jnp.zeros((), y.dtype),
            "sigma": jnp.full((), 0.25, y.dtype),
        },
        {},
        about="log-normal",
    ),
    "damped_oscillator": Builtin(
        ls.damped_oscillator,
        PEAK,
        guesses.scaled_peak(0.1, 0.1),
        {"height": lambda p: 0.5 * p["amplitude"] / jnp.maximum(ls.TINY, p["sigma"])},
        about="driven damped oscillator amplitude",
    ),
    "dho": Builtin(
        ls.dho,
        {"center": POSITIVE, "sigma": POSITIVE, "gamma": Hint(min=1e-19)},
        guesses.scaled_peak(0.1, 0.1, gamma=1.0),
        {},
        about="damped harmonic oscillator (Bose-weighted)",
    ),
    "expgaussian": Builtin(
        ls.expgaussian,
        {"sigma": POSITIVE, "gamma": Hint(min=0.0, max=20.0)},
        guesses.scaled_peak(),
        {},
        about="exponentially modified Gaussian",
    ),
    "skewed_gaussian": Builtin(
        ls.skewed_gaussian, PEAK, guesses.scaled_peak(), {}, about="Gaussian skewed by erf"
    ),
    "skewed_voigt": Builtin(
        ls.skewed_voigt,
        {"sigma": POSITIVE, "gamma": Hint(expr="sigma")},
        guesses.scaled_peak(),
        {},
        about="Voigt skewed by erf",
    ),
    "doniach": Builtin(ls.doniach, {}, guesses.scaled_peak(0.5), {}, about="Doniach–Šunjić (XPS)"),
    "logistic": Builtin(ls.logistic, {}, guesses.step, {}, about="logistic step"),
    "step": Builtin(ls.step, {}, guesses.step, {}, about="step: linear, atan, erf or logistic"),
    "rectangle": Builtin(
        ls.rectangle,
        {"sigma1": POSITIVE, "sigma2": POSITIVE},
        guesses.rectangle,
        {},
        about="step up, step down",
    ),
    "sine": Builtin(
        ls.sine,
        {"amplitude": POSITIVE, "frequency": POSITIVE, "shift": Hint(min=-TAU - 1e-5, max=TAU + 1e-5)},
        guesses.sine,
        {},
        about="amplitude·sin(frequency·x + shift)",
    ),
    "expsine": Builtin(
        ls.expsine,
        {},
        lambda x, y, m: {**guesses.sine(x, y, m), "decay": jnp.zeros((), y.dtype)},
        {},
        about="decaying sine",
    ),
    "thermal_distribution": Builtin(
        ls.thermal_distribution, {}, guesses.thermal, {}, about="Bose, Maxwell or Fermi"
    ),
    "bose": Builtin(ls.bose, {}, guesses.thermal, {}, about="Bose–Einstein"),
    "fermi": Builtin(ls.fermi, {}, guesses.thermal, {}, about="Fermi–Dirac"),
    "gaussian2d": Builtin(
        ls.gaussian2d,
        {"sigmax": POSITIVE, "sigmay": POSITIVE},
        _gaussian2d_guess,
        {
            "fwhmx": lambda p: FWHM_GAUSS * p["sigmax"],
            "fwhmy": lambda p: FWHM_GAUSS * p["sigmay"],
            "height": lambda p: p["amplitude"] / (2 * np.pi * p["sigmax"] * p["sigmay"]),
        },
        dims=2,
        about="normalised 2-D Gaussian (lmfit)",
    ),
    # beyond lmfit
    "dose_response": Builtin(
        ls.dose_response,
        {},
        guesses.dose_response,
        {"ec50": lambda p: 10.0 ** p["logec50"]},
        about="4PL on log10(dose); ec50 derived",
    ),
    "hill": Builtin(ls.hill, {"ec50": POSITIVE}, guesses.hill, {}, about="Hill equation on dose"),
    "michaelis_menten": Builtin(
        ls.michaelis_menten, {"km": POSITIVE}, guesses.michaelis_menten, {}, about="vmax·x/(km + x)"
    ),
    "double_exponential": Builtin(
        ls.double_exponential,
        {"k1": POSITIVE, "k2": POSITIVE},
        guesses.double_exponential,
        {"tau1": lambda p: 1 / p["k1"], "tau2": lambda p: 1 / p["k2"]},
        about="a1·exp(−k1·x) + a2·exp(−k2·x)",
    ),
    "gauss2d": Builtin(
        ls.gauss2d,
        SPOT,
        guesses.spot,
        {"fwhm": lambda p: FWHM_GAUSS * p["sigma"]},
        dims=2,
        about="Gpufit GAUSS_2D",
    ),
    "gauss2d_elliptic": Builtin(
        ls.gauss2d_elliptic, SPOT, guesses.spot, {}, dims=2, about="Gpufit GAUSS_2D_ELLIPTIC"
    ),
    "gauss2d_rotated": Builtin(
        ls.gauss2d_rotated, SPOT, guesses.spot, {}, dims=2, about="Gpufit GAUSS_2D_ROTATED"
    ),
    "cauchy2d_elliptic": Builtin(
        ls.cauchy2d_elliptic,
        {"gamma_x": POSITIVE, "gamma_y": POSITIVE},
        guesses.spot,
        {},
        dims=2,
        about="Gpufit CAUCHY_2D_ELLIPTIC",
    ),
}
"""Every built-in by the name a config or ``jaxfit.models.builtin`` uses."""

OPTIONS = {
    "step": {"form": ls.STEP_FORMS},
    "rectangle": {"form": ls.STEP_FORMS},
    "thermal_distribution": {"form": tuple(ls.THERMAL_OFFSET)},
    "polynomial": {"degree": tuple(range(8))},
}
"""The shapes that take an option (fixed when the model is made)."""

ALIASES = {
    "quadratic": "parabolic",
    "pseudo_voigt": "pvoigt",
    "exponential_gaussian": "expgaussian",
    "damped_harmonic_oscillator": "dho",
    "power_law": "powerlaw",
    "four_pl": "dose_response",
}
"""lmfit's other names for the same shapes."""
