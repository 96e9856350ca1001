"""The NIST StRD problems behind ``python -m jaxfit bench --nist``: every file parsed,
and every model as written reproduces NIST's certified residual sum of squares at the
certified parameters (so the bench scores against the right problems)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxfit.benchmarks import nist

PROBLEMS = nist.problems()


def test_all_27_problems_with_two_starts_each():
    assert len(PROBLEMS) == 27
    assert all(p.starts.shape == (2, p.certified.size) for p in PROBLEMS)


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_the_model_reproduces_the_certified_ssr(problem):
    f = nist._models(np)[problem.name]
    ssr = np.sum((problem.y - f(problem.x, *problem.certified)) ** 2)
    assert ssr == pytest.approx(problem.ssr, rel=1e-6)


def test_lre_counts_certified_digits():
    assert nist.lre(np.array([1.2345e3]), np.array([1.2346e3])) == pytest.approx(4.09, abs=0.01)
    assert nist.lre(np.array([np.nan]), np.array([1.0])) == 0.0
