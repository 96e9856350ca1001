"""Line shapes in ``jax.numpy``: lmfit's ``lineshapes`` formula for formula (the same
names, parameters, defaults and guards against division by zero), and the shapes of
dose-response, kinetics and 2-D spot fitting (Gpufit's models). Each is
``shape(x, *params)``: pure, elementwise in ``x``, differentiable; the 2-D ones take
``x`` with its two coordinates first (``x[0]``, ``x[1]``: ``(2,)`` or ``(2, n)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, erf, erfc, gammaln

from jaxfit.models.faddeeva import wofz

TINY = 1.0e-15
"""lmfit's floor for denominators (``lmfit.lineshapes.tiny``)."""
LOG2 = float(np.log(2))
S2PI = float(np.sqrt(2 * np.pi))
S2 = float(np.sqrt(2.0))
PI = float(np.pi)


def _floor(v: jax.Array, tiny: float = TINY) -> jax.Array:
    return jnp.maximum(tiny, v)


def _not_zero(v: jax.Array) -> jax.Array:
    """``v`` at least ``TINY`` in size, its sign kept (lmfit's ``not_zero``)."""
    return jnp.where(v < 0, -1.0, 1.0) * jnp.maximum(TINY, jnp.abs(v))


def gaussian(x, amplitude=1.0, center=0.0, sigma=1.0):
    return (amplitude / _floor(S2PI * sigma)) * jnp.exp(-((1.0 * x - center) ** 2) / _floor(2 * sigma**2))


def lorentzian(x, amplitude=1.0, center=0.0, sigma=1.0):
    return (amplitude / (1 + ((1.0 * x - center) / _floor(sigma)) ** 2)) / _floor(PI * sigma)


def split_lorentzian(x, amplitude=1.0, center=0.0, sigma=1.0, sigma_r=1.0):
    s, r = _floor(sigma), _floor(sigma_r)
    xc2 = (x - center) ** 2
    amp = 2 * amplitude / (PI * (s + r))
    return amp * (s * s * (x < center) / (s * s + xc2) + r * r * (x >= center) / (r * r + xc2))


def voigt(x, amplitude=1.0, center=0.0, sigma=1.0, gamma=1.0):
    z = (x - center + 1j * gamma) / _floor(sigma * S2)
    return amplitude * jnp.real(wofz(z)) / _floor(sigma * S2PI)


def pvoigt(x, amplitude=1.0, center=0.0, sigma=1.0, fraction=0.5):
    sigma_g = sigma / np.sqrt(2 * LOG2)
    return (1 - fraction) * gaussian(x, amplitude, center, sigma_g) + fraction * lorentzian(
        x, amplitude, center, sigma
    )


def moffat(x, amplitude=1.0, center=0.0, sigma=1.0, beta=1.0):
    return amplitude / (((x - center) / _floor(sigma)) ** 2 + 1) ** beta


def _log_abs_gamma(re: jax.Array, im: jax.Array) -> jax.Array:
    """``Re log Γ(re + i·im)`` for ``re > 0``: shifted by 16 (recurrence), then
    Stirling's series (8 terms: below 1e-16 at ``|z| ≥ 16``)."""
    shift = 16
    z = re + 16.0 + 1j * im
    bern = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
    series = sum(b / z ** (2 * k + 1) for k, b in enumerate(bern))
    stirling = (z - 0.5) * jnp.log(z) - z + 0.5 * np.log(2 * np.pi) + series
    down = sum(0.5 * jnp.log((re + k) ** 2 + im**2) for k in range(shift))
    return jnp.real(stirling) - down


def pearson4(x, amplitude=1.0, center=0.0, sigma=1.0, expon=1.0, skew=0.0):
    expon, sigma = _floor(expon), _floor(sigma)
    arg = (x - center) / sigma
    logprefactor = 2 * (_log_abs_gamma(expon, 0.5 * skew) - gammaln(expon)) - betaln(expon - 0.5, 0.5)
    return (amplitude / sigma) * jnp.exp(logprefactor - expon * jnp.log1p(arg * arg) - skew * jnp.arctan(arg))


def pearson7(x, amplitude=1.0, center=0.0, sigma=1.0, expon=1.0):
    expon = _floor(expon)
    arg = (x - center) / _floor(sigma)
    scale = amplitude * jnp.exp(gammaln(expon) - gammaln(0.5) - gammaln(expon - 0.5))
    return scale * (1 + arg**2) ** (-expon) / _floor(sigma)


def breit_wigner(x, amplitude=1.0, center=0.0, sigma=1.0, q=1.0):
    gam = sigma / 2.0
    return amplitude * (q * gam + x - center) ** 2 / (gam * gam + (x - center) ** 2)


def damped_oscillator(x, amplitude=1.0, center=1.0, sigma=0.1):
    center = _floor(jnp.abs(center))
    return amplitude / jnp.sqrt((1.0 - (x / center) ** 2) ** 2 + (2 * sigma * x / center) ** 2)


def dho(x, amplitude=1.0, center=1.0, sigma=1.0, gamma=1.0):
    factor = amplitude * sigma / PI
    bose = 1.0 - jnp.exp(-x / _floor(gamma))
    bose = jnp.where(jnp.isnan(bose) | (jnp.abs(bose) <= TINY), TINY, bose)
    lm = 1.0 / ((x - center) ** 2 + sigma**2)
    lp = 1.0 / ((x + center) ** 2 + sigma**2)
    at_zero = jnp.isclose(x, 0.0)
    return factor * jnp.where(
        at_zero, 4 * gamma * center / (center**2 + sigma**2) ** 2, (lm - lp) / jnp.where(at_zero, 1.0, bose)
    )


def logistic(x, amplitude=1.0, center=0.0, sigma=1.0):
    return amplitude * (1.0 - 1.0 / (1.0 + jnp.exp((x - center) / _floor(sigma))))


def lognormal(x, amplitude=1.0, center=0.0, sigma=1.0):
    x = jnp.maximum(x, TINY)
    return (amplitude / (x * _floor(sigma * S2PI))) * jnp.exp(
        -((jnp.log(x) - center) ** 2) / _floor(2 * sigma**2)
    )


def students_t(x, amplitude=1.0, center=0.0, sigma=1.0):
    s1 = (sigma + 1) / 2.0
    denom = _floor(jnp.sqrt(sigma * PI) * jnp.exp(gammaln(_floor(sigma / 2))))
    return amplitude * (1 + (x - center) ** 2 / _floor(sigma)) ** (-s1) * jnp.exp(gammaln(s1)) / denom


def expgaussian(x, amplitude=1.0, center=0.0, sigma=1.0, gamma=1.0):
    gss = gamma * sigma * sigma
    arg1 = gamma * (center + gss / 2.0 - x)
    arg2 = (center + gss - x) / _floor(S2 * sigma)
    return amplitude * (gamma / 2) * jnp.exp(arg1) * erfc(arg2)


def doniach(x, amplitude=1.0, center=0.0, sigma=1.0, gamma=0.0):
    arg = (x - center) / _floor(sigma)
    gm1 = 1.0 - gamma
    scale = amplitude / _floor(sigma**gm1)
    return scale * jnp.cos(PI * gamma / 2 + gm1 * jnp.arctan(arg)) / (1 + arg**2) ** (gm1 / 2)


def skewed_gaussian(x, amplitude=1.0, center=0.0, sigma=1.0, gamma=0.0):
    asym = 1 + erf(gamma * (x - center) / _floor(S2 * sigma))
    return asym * gaussian(x, amplitude, center, sigma)


def skewed_voigt(x, amplitude=1.0, center=0.0, sigma=1.0, gamma=1.0, skew=0.0):
    beta = skew / _floor(S2 * sigma)
    return (1 + erf(beta * (x - center))) * voigt(x, amplitude, center, sigma, gamma)


THERMAL_OFFSET = {"bose": -1.0, "maxwell": 0.0, "fermi": 1.0}


def thermal_distribution(x, amplitude=1.0, center=0.0, kt=1.0, form="bose"):
    d = amplitude * jnp.exp((x - center) / _not_zero(kt)) + THERMAL_OFFSET[form]
    return d / (d * d + TINY * TINY)  # real(1 / (d + i·tiny)), as lmfit


def bose(x, amplitude=1.0, center=0.0, kt=1.0):
    denom = jnp.exp((x - center) / _not_zero(kt)) - 1.0
    return amplitude / jnp.where(jnp.abs(denom) < TINY * TINY, TINY * TINY, denom)


def fermi(x, amplitude=1.0, center=0.0, kt=1.0):
    return amplitude / (jnp.exp((x - center) / _not_zero(kt)) + 1.0)


STEP_FORMS = ("linear", "atan", "arctan", "erf", "logistic")


def step(x, amplitude=1.0, center=0.0, sigma=1.0, form="linear"):
    out = jnp.sign(sigma) * (x - center) / jnp.maximum(TINY * TINY, jnp.abs(sigma))
    if form == "erf":
        out = 0.5 * (1 + erf(out))
    elif form == "logistic":
        out = 1.0 - 1.0 / (1.0 + jnp.exp(out))
    elif form in ("atan", "arctan"):
        out = 0.5 + jnp.arctan(out) / PI
    else:
        out = jnp.minimum(1, jnp.maximum(0, out + 0.5))
    return amplitude * out


def rectangle(x, amplitude=1.0, center1=0.0, sigma1=1.0, center2=1.0, sigma2=1.0, form="linear"):
    arg1 = (x - center1) / _floor(sigma1)
    arg2 = (center2 - x) / _floor(sigma2)
    if form == "erf":
        out = 0.5 * (erf(arg1) + erf(arg2))
    elif form == "logistic":
        out = 1.0 - 1.0 / (1.0 + jnp.exp(arg1)) - 1.0 / (1.0 + jnp.exp(arg2))
    elif form in ("atan", "arctan"):
        out = (jnp.arctan(arg1) + jnp.arctan(arg2)) / PI
    else:
        out = 0.5 * (jnp.minimum(1, jnp.maximum(-1, arg1)) + jnp.minimum(1, jnp.maximum(-1, arg2)))
    return amplitude * out


def exponential(x, amplitude=1.0, decay=1.0):
    return amplitude * jnp.exp(-x / _not_zero(decay))


def powerlaw(x, amplitude=1.0, exponent=1.0):
    return amplitude * x**exponent


def constant(x, c=0.0):
    return c * jnp.ones_like(x)


def linear(x, slope=1.0, intercept=0.0):
    return slope * x + intercept


def parabolic(x, a=0.0, b=0.0, c=0.0):
    return a * x**2 + b * x + c


def sine(x, amplitude=1.0, frequency=1.0, shift=0.0):
    return amplitude * jnp.sin(x * frequency + shift)


def expsine(x, amplitude=1.0, frequency=1.0, shift=0.0, decay=0.0):
    return amplitude * jnp.sin(x * frequency + shift) * jnp.exp(-x * decay)


def gaussian2d(x, amplitude=1.0, centerx=0.0, centery=0.0, sigmax=1.0, sigmay=1.0):
    """lmfit's ``gaussian2d`` (normalised) over ``x = (x, y)``."""
    return amplitude * (gaussian(x[0], 1.0, centerx, sigmax) * gaussian(x[1], 1.0, centery, sigmay))


# --- beyond lmfit: dose-response, kinetics, 2-D spots (Gpufit's models) ----------------


def dose_response(x, bottom=0.0, top=1.0, logec50=0.0, hill=1.0):
    """The four-parameter logistic (4PL) on ``x = log10(dose)``: ``bottom + (top −
    bottom) / (1 + 10^((logec50 − x)·hill))``."""
    return bottom + (top - bottom) / (1 + 10.0 ** ((logec50 - x) * hill))


def hill(x, bottom=0.0, top=1.0, ec50=1.0, n=1.0):
    """The Hill equation on a linear dose: ``bottom + (top − bottom)·xⁿ/(ec50ⁿ + xⁿ)``."""
    xn = jnp.abs(x) ** n
    return bottom + (top - bottom) * xn / (jnp.abs(ec50) ** n + xn)


def michaelis_menten(x, vmax=1.0, km=1.0):
    return vmax * x / (km + x)


def double_exponential(x, a1=1.0, k1=1.0, a2=1.0, k2=0.1):
    """A sum of two exponential decays by rate: ``a1·exp(−k1·x) + a2·exp(−k2·x)``."""
    return a1 * jnp.exp(-k1 * x) + a2 * jnp.exp(-k2 * x)


def gauss2d(x, amplitude=1.0, x0=0.0, y0=0.0, sigma=1.0, offset=0.0):
    """Gpufit's GAUSS_2D: ``amplitude·exp(−((x−x0)² + (y−y0)²)/(2σ²)) + offset``."""
    r2 = (x[0] - x0) ** 2 + (x[1] - y0) ** 2
    return amplitude * jnp.exp(-r2 / (2 * sigma**2)) + offset


def gauss2d_elliptic(x, amplitude=1.0, x0=0.0, y0=0.0, sigma_x=1.0, sigma_y=1.0, offset=0.0):
    """Gpufit's GAUSS_2D_ELLIPTIC (axis-aligned widths)."""
    q = ((x[0] - x0) / sigma_x) ** 2 + ((x[1] - y0) / sigma_y) ** 2
    return amplitude * jnp.exp(-q / 2) + offset


def gauss2d_rotated(x, amplitude=1.0, x0=0.0, y0=0.0, sigma_x=1.0, sigma_y=1.0, offset=0.0, rotation=0.0):
    """Gpufit's GAUSS_2D_ROTATED: the elliptic spot turned by ``rotation`` (radians)."""
    c, s = jnp.cos(rotation), jnp.sin(rotation)
    dx, dy = x[0] - x0, x[1] - y0
    u, v = dx * c - dy * s, dx * s + dy * c
    return amplitude * jnp.exp(-((u / sigma_x) ** 2 + (v / sigma_y) ** 2) / 2) + offset


def cauchy2d_elliptic(x, amplitude=1.0, x0=0.0, y0=0.0, gamma_x=1.0, gamma_y=1.0, offset=0.0):
    """Gpufit's CAUCHY_2D_ELLIPTIC: a product of two Lorentzian profiles (unit peak)."""
    return amplitude / ((1 + ((x[0] - x0) / gamma_x) ** 2) * (1 + ((x[1] - y0) / gamma_y) ** 2)) + offset
