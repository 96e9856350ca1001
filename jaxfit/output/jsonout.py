"""Strict JSON out: non-finite numbers (a diverged fit's loss) become ``null``, so
every JSON jaxfit writes parses in any JSON reader (``NaN``/``Infinity`` are not JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with NumPy arrays/scalars as Python values and non-finite floats as None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (see ``plain``)."""
    try:  # plain Python values, all finite: no need to walk them first
        return json.dumps(value, indent=indent, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(plain(value), indent=indent, allow_nan=False)
