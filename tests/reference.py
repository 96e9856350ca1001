"""Independent float64 NumPy reference: the seed's network, its hand-derived
gradient, and gradient descent with jaxfit's stopping rule."""

from __future__ import annotations

import numpy as np

NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
SEED = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 0.0}
X = np.array([0.0, 0.5, 1.0])
Y = np.array([0.0, 1.0, 0.0])
CONVERGED, MAX_STEPS, DIVERGED = 1, 2, 3


def softplus(z):
    return np.logaddexp(z, 0.0)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def predict(p, x=X):
    return p["w3"] * softplus(p["w1"] * x + p["b1"]) + p["w4"] * softplus(p["w2"] * x + p["b2"]) + p["b3"]


def ssr(p, x=X, y=Y):
    return float(np.sum((y - predict(p, x)) ** 2))


def grad(p, x=X, y=Y):
    """Analytic dSSR/dparam for every parameter (chain rule, by hand)."""
    z1, z2 = p["w1"] * x + p["b1"], p["w2"] * x + p["b2"]
    d = -2.0 * (y - predict(p, x))  # dSSR/dpredicted
    return {
        "w1": float(np.sum(d * p["w3"] * sigmoid(z1) * x)),
        "b1": float(np.sum(d * p["w3"] * sigmoid(z1))),
        "w2": float(np.sum(d * p["w4"] * sigmoid(z2) * x)),
        "b2": float(np.sum(d * p["w4"] * sigmoid(z2))),
        "w3": float(np.sum(d * softplus(z1))),
        "w4": float(np.sum(d * softplus(z2))),
        "b3": float(np.sum(d)),
    }


def gradient_descent(p0, trainable, lr, tol, max_steps, x=X, y=Y):
    """Plain GD: step size = lr * grad; stop when every |step size| < tol, at
    max_steps, or on a non-finite value. Returns (params, steps, status, trace)."""
    p = dict(p0)
    g = grad(p, x, y)
    trace = []
    for k in range(1, max_steps + 1):
        steps = {n: lr * g[n] for n in trainable}
        trace.append(
            {
                "params": {n: p[n] for n in trainable},
                "loss": ssr(p, x, y),
                "grad": {n: g[n] for n in trainable},
                "step_size": steps,
            }
        )
        for n in trainable:
            p[n] = p[n] - steps[n]
        loss, g = ssr(p, x, y), grad(p, x, y)
        values = [loss] + [g[n] for n in trainable] + [p[n] for n in trainable] + list(steps.values())
        if not np.all(np.isfinite(values)):
            return p, k, DIVERGED, trace
        if all(abs(s) < tol for s in steps.values()):
            return p, k, CONVERGED, trace
    return p, max_steps, MAX_STEPS, trace


def closed_form_b3(p=SEED, x=X, y=Y):
    """The exact minimiser of SSR over b3 alone: mean(y - blue - orange)."""
    rest = predict({**p, "b3": 0.0}, x)
    return float(np.mean(y - rest))


# -- the network family: H hidden nodes of one activation (names as jaxfit's)

ACT = {
    "softplus": (softplus, sigmoid),
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1.0 - sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
}


def net_names(h):
    return (
        [n for i in range(1, h + 1) for n in (f"w{i}", f"b{i}")]
        + [f"w{h + i}" for i in range(1, h + 1)]
        + [f"b{h + 1}"]
    )


def net_predict(p, h, act, x):
    f = ACT[act][0]
    return sum(p[f"w{h + i}"] * f(p[f"w{i}"] * x + p[f"b{i}"]) for i in range(1, h + 1)) + p[f"b{h + 1}"]


def net_grad(p, h, act, x, y):
    """dSSR/dparam of the network, by the chain rule, node by node."""
    f, df = ACT[act]
    d = -2.0 * (y - net_predict(p, h, act, x))
    g = {f"b{h + 1}": float(np.sum(d))}
    for i in range(1, h + 1):
        z = p[f"w{i}"] * x + p[f"b{i}"]
        g[f"w{h + i}"] = float(np.sum(d * f(z)))
        g[f"w{i}"] = float(np.sum(d * p[f"w{h + i}"] * df(z) * x))
        g[f"b{i}"] = float(np.sum(d * p[f"w{h + i}"] * df(z)))
    return g


def net_gradient_descent(p0, h, act, trainable, lr, tol, max_steps, x, y):
    """Plain GD on the network with jaxfit's stopping rule: (params, steps, status)."""
    p = dict(p0)
    g = net_grad(p, h, act, x, y)
    for k in range(1, max_steps + 1):
        steps = {n: lr * g[n] for n in trainable}
        for n in trainable:
            p[n] = p[n] - steps[n]
        loss = float(np.sum((y - net_predict(p, h, act, x)) ** 2))
        g = net_grad(p, h, act, x, y)
        values = [loss] + [g[n] for n in trainable] + [p[n] for n in trainable] + list(steps.values())
        if not np.all(np.isfinite(values)):
            return p, k, DIVERGED
        if all(abs(s) < tol for s in steps.values()):
            return p, k, CONVERGED
    return p, max_steps, MAX_STEPS


# -- the decay model a * exp(-k x) + c, by hand


def decay_predict(p, x):
    return p["a"] * np.exp(-p["k"] * x) + p["c"]


def decay_grad(p, x, y):
    e = np.exp(-p["k"] * x)
    r = y - decay_predict(p, x)
    return {
        "a": float(-2 * np.sum(r * e)),
        "k": float(2 * np.sum(r * p["a"] * x * e)),
        "c": float(-2 * np.sum(r)),
    }


def decay_gradient_descent(p0, lr, tol, max_steps, x, y):
    """Plain GD on all three parameters with jaxfit's stopping rule: (params, steps, status)."""
    p, g = dict(p0), decay_grad(p0, x, y)
    for k in range(1, max_steps + 1):
        steps = {n: lr * g[n] for n in "akc"}
        p = {n: p[n] - steps[n] for n in "akc"}
        g = decay_grad(p, x, y)
        if not np.all(np.isfinite(list(p.values()) + list(g.values()))):
            return p, k, DIVERGED
        if all(abs(s) < tol for s in steps.values()):
            return p, k, CONVERGED
    return p, max_steps, MAX_STEPS
