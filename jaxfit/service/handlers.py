"""The routes' handlers. Each takes the server's one explicit ``State`` and the
request; errors are raised (``guard.HTTPError`` and friends) and mapped to
responses in one place, ``guard.error_response``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import jax
import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from jaxfit.config import Config, json_schema, load_config
from jaxfit.core.engine import opt_state_shapes, state_from_dict, state_to_dict
from jaxfit.output.jsonout import plain
from jaxfit.plan.lowering import dtype_of, plan_fit, precision, problem_of, spec_of
from jaxfit.run.batch import fit_batch as run_batch
from jaxfit.run.single import make_state, make_step
from jaxfit.service.batcher import FitBatcher
from jaxfit.service.guard import HTTPError, Limits, encode, read_json, within
from jaxfit.service.metrics import Metrics


@dataclass
class State:
    """Everything the handlers share, for the server's lifetime."""

    limits: Limits
    batcher: FitBatcher
    metrics: Metrics
    token: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    """Model functions requests may name: as registered -> resolved import path."""
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One /v1/fit_batch at a time: each uses every device."""


def register_models(specs: list[str]) -> dict[str, str]:
    """Import and check each ``module:function`` (from the working directory first,
    then ``sys.path``); ``ValueError`` naming the first that is not a model."""
    from pathlib import Path

    from jaxfit.plan import functions

    models = {}
    for spec in specs:
        try:
            resolved = functions.resolve(spec, Path.cwd())
            fn, names, _ = functions.load(resolved)
            functions.check_traceable(fn, names, spec)
        except ValueError as err:
            raise ValueError(f"{spec}: {err}") from None
        models[spec] = resolved
    return models


def _allowed(state: State, raw: dict) -> dict:
    """The request's config with a registered model's resolved path; 422 for a model
    the server does not serve, a network past the width cap, or a data file."""
    model, data = raw.get("model"), raw.get("data")
    if isinstance(data, dict) and "file" in data:
        raise HTTPError(422, "data.file: a request cannot name a file; send the data as x and y lists")
    if not isinstance(model, dict):
        return raw
    if "function" in model:
        name = model["function"]
        if name not in state.models:
            served = ", ".join(state.models) or "none: start the server with --model MODULE:FUNCTION"
            raise HTTPError(
                422, f"model.function: {name!r} is not a model this server serves (it serves {served})"
            )
        return {**raw, "model": {**model, "function": state.models[name]}}
    hidden = model.get("hidden")
    if isinstance(hidden, int) and hidden > state.limits.max_hidden:
        raise HTTPError(422, f"model.hidden: at most {state.limits.max_hidden} per request (got {hidden})")
    return raw


class JSONResponse(Response):
    """Strict JSON: non-finite numbers (a diverged fit's loss) as null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)


def config_of(state: State, raw: Any, what: str = "body") -> Config:
    """A request's config, validated (422 with the CLI's message) and within the limits."""
    if not isinstance(raw, dict):
        raise HTTPError(422, f"{what}: a config must be a JSON object (got {type(raw).__name__})")
    config = load_config(_allowed(state, raw))  # a ConfigError becomes 422
    if config.train.max_steps > state.limits.max_steps:
        raise HTTPError(
            422,
            f"train.max_steps: at most {state.limits.max_steps:,} per request (got {config.train.max_steps:,})",
        )
    return config


def _flag(values: list[str] | str | None, default: bool) -> bool:
    value = values[-1] if isinstance(values, list) else values
    return default if value is None else value.lower() in ("1", "true", "yes")


async def fit(state: State, scope: dict, receive: Any) -> bytes:
    """POST /v1/fit -> the response body. The hot path under load, so it runs
    without the framework's per-request objects (a batched fit costs a few us)."""
    config = config_of(state, await read_json(scope, receive, state.limits.max_body_bytes))
    if config.is_batch:
        raise HTTPError(422, "batch: use POST /v1/fit_batch for a config with a batch section")
    query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
    plan = plan_fit(config)
    body = await state.batcher.fit(plan, _flag(query.get("trace"), True))  # keeps the time limit
    if "curve" not in query:
        return body
    points = _count(query["curve"], "curve", 2, 2000)
    fitted = orjson.loads(body)
    loop = asyncio.get_running_loop()
    fitted["curve"] = await within(
        state.limits.timeout_s, loop.run_in_executor(None, curve_of, plan, fitted, points)
    )
    return encode(fitted)


def _count(values: list[str], name: str, low: int, high: int) -> int:
    try:
        value = int(values[-1])
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise HTTPError(422, f"{name}: a whole number from {low} to {high} (got {values[-1]!r})")
    return value


def curve_of(plan: Any, fitted: dict, points: int) -> dict | None:
    """The fitted curve at ``points`` values of ``x`` across the data, with its
    confidence band's half-width (null where the covariance is unknown); None for a
    model of several coordinates."""
    from jaxfit.output.plots import DataSet, curve_and_band

    if plan.dims:
        return None
    data = plan.problem.data
    real = np.ones(np.shape(data.y), bool) if data.mask is None else np.asarray(data.mask)
    x = np.asarray(data.x, np.float64)[real]
    if not all(np.isfinite(v) for v in fitted["params"].values()):
        return None
    dense = np.linspace(x.min(), x.max(), points)
    cov = fitted.get("covariance")
    one = DataSet(
        "",
        x,
        x,
        None,
        fitted["params"],
        None if cov is None else np.asarray(cov, np.float64),
        int(fitted.get("dof") or 0),
        fitted["status"],
        float("nan"),
    )
    curve, half = curve_and_band(
        plan.spec.model, one, plan.spec.trainable, float(fitted["confidence"]), dense
    )
    return {"x": dense.tolist(), "y": curve.tolist(), "band": None if half is None else half.tolist()}


async def models(state: State, request: Request) -> Response:
    """GET /v1/models -> the models requests may name, with their parameters."""
    from jaxfit.plan import functions

    out = []
    for name, resolved in state.models.items():
        _, names, defaults = functions.load(resolved)
        out.append({"name": name, "parameters": list(names), "defaults": defaults})
    return JSONResponse({"models": out})


async def models_page(state: State, request: Request) -> Response:
    return HTMLResponse(
        resources.files("jaxfit.service").joinpath("static/models.html").read_text(encoding="utf-8")
    )


async def fit_batch(state: State, request: Request) -> Response:
    """POST /v1/fit_batch -> the batch's summary (``?per_fit=true`` adds per-fit arrays)."""
    limits = state.limits
    config = config_of(state, await read_json(request.scope, request.receive, limits.max_body_bytes))
    if config.batch is None:
        raise HTTPError(422, "batch: missing; POST /v1/fit runs a single fit")
    if config.fits > limits.max_fits:
        raise HTTPError(422, f"batch: {config.fits:,} fits; at most {limits.max_fits:,} per request")
    per_fit = _flag(request.query_params.get("per_fit"), False)
    if per_fit and config.fits > limits.max_per_fit:
        raise HTTPError(
            422,
            f"per_fit: only for batches of up to {limits.max_per_fit:,} fits (this has {config.fits:,})",
        )
    async with state.batch_lock:
        loop = asyncio.get_running_loop()
        result = await within(limits.timeout_s, loop.run_in_executor(None, run_batch, config))
    body = result.summary()
    if per_fit:
        body["per_fit"] = {
            "init": {n: v.tolist() for n, v in result.init.items()},
            "params": {n: v.tolist() for n, v in result.params.items()},
            "loss": result.loss.tolist(),
            "steps": result.steps.tolist(),
            "status": result.status.tolist(),
            "learning_rate": result.learning_rate.tolist(),
        }
        if result.dof is not None:
            body["per_fit"]["stderr"] = {n: v.tolist() for n, v in result.stderr.items()}
            for f in ("chisqr", "dof", "redchi", "aic", "bic", "rsquared", "singular"):
                body["per_fit"][f] = getattr(result, f).tolist()
    return JSONResponse(body)


def _scalar(raw: Any, field: str, dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``raw`` as a number (or, for ``shape`` (m,), a list of m numbers), else a 422."""
    wanted = "a number" if shape == () else f"a list of {shape[0]} numbers"
    try:
        value = np.asarray(raw, dtype)
    except (TypeError, ValueError) as err:
        raise HTTPError(422, f"state.{field}: expected {wanted} ({err})") from None
    if value.shape != shape:
        raise HTTPError(422, f"state.{field}: expected {wanted}, got an array of shape {list(value.shape)}")
    return value


def state_of(config: Config, raw: Any) -> Any:
    """A ``FitState`` from a previous /v1/step response's ``state`` (422 naming the field)."""
    if not isinstance(raw, dict):
        raise HTTPError(422, "state: must be a JSON object from a previous /v1/step response, or null")
    dtype, names = dtype_of(config), config.train.trainable

    def get(name: str) -> Any:
        if name not in raw:
            raise HTTPError(422, f"state.{name}: missing")
        return raw[name]

    def by_name(name: str) -> dict[str, np.ndarray]:
        values = get(name)
        if not isinstance(values, dict) or set(values) != set(names):
            raise HTTPError(
                422, f"state.{name}: expected an object with {', '.join(names)} (the trainable set)"
            )
        return {n: _scalar(values[n], f"{name}.{n}", dtype) for n in names}

    shapes = opt_state_shapes(spec_of(config), dtype)
    opt_tree, leaves = jax.tree.structure(shapes), jax.tree.leaves(shapes)
    opt = get("opt_state")
    if not isinstance(opt, list) or len(opt) != len(leaves):
        raise HTTPError(422, f"state.opt_state: expected a list of {len(leaves)} entries for this optimizer")
    fields = {
        "params": by_name("params"),
        "opt_state": [
            _scalar(v, f"opt_state[{i}]", s.dtype, s.shape) for i, (v, s) in enumerate(zip(opt, leaves))
        ],
        "loss": _scalar(get("loss"), "loss", dtype),
        "grad": by_name("grad"),
        "step_size": by_name("step_size"),
        "step": _scalar(get("step"), "step", np.int32),
        "status": _scalar(get("status"), "status", np.int32),
    }
    return state_from_dict(fields, opt_tree)


def step_once(config: Config, raw_state: Any) -> dict[str, Any]:
    """One compiled step from ``raw_state`` (or from the config's start when None)."""
    with precision(config):
        problem = problem_of(config)
        before = make_state(config, problem) if raw_state is None else state_of(config, raw_state)
        after = make_step(config)(before, problem)
        return plain(
            {
                "state": jax.device_get(state_to_dict(after)),
                "before": jax.device_get({"params": before.params, "loss": before.loss, "grad": before.grad}),
            }
        )


async def step(state: State, request: Request) -> Response:
    """POST /v1/step: ``{"config": ..., "state": null | state}`` -> one compiled step."""
    body = await read_json(request.scope, request.receive, state.limits.max_body_bytes)
    if not isinstance(body, dict) or "config" not in body:
        raise HTTPError(422, 'body: expected {"config": {...}, "state": null | {...}}')
    config = config_of(state, body["config"], "config")
    if config.batch is not None:
        raise HTTPError(422, "batch: /v1/step takes a single-fit config")
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(None, step_once, config, body.get("state"))
    return JSONResponse(await within(state.limits.timeout_s, work))


async def schema(state: State, request: Request) -> Response:
    return JSONResponse(json_schema())


async def healthz(state: State, request: Request) -> Response:
    return JSONResponse({"status": "ok", "devices": len(jax.local_devices()), "queue": state.batcher.depth})


async def metrics(state: State, request: Request) -> Response:
    batcher = state.batcher
    return PlainTextResponse(
        state.metrics.render(batcher.batch_count, batcher.batch_fits, batcher.depth),
        media_type="text/plain; version=0.0.4",
    )


async def page(state: State, request: Request) -> Response:
    return HTMLResponse(
        resources.files("jaxfit.service").joinpath("static/index.html").read_text(encoding="utf-8")
    )
