"""A four-parameter logistic dose-response curve, for configs/dose_response.yaml.

x is log10 of the dose; the curve rises from ``bottom`` to ``top`` around
``log_ec50`` with steepness ``slope``. Defaults are the starting values.
"""

import jax


def predict(x, bottom=0.0, top=1.0, log_ec50=-1.0, slope=1.0):
    return bottom + (top - bottom) * jax.nn.sigmoid(slope * (x - log_ec50))
