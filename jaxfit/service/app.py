"""``python -m jaxfit serve``: warm compiled fits behind an HTTP API (needs the
``serve`` extra: starlette, uvicorn).

    POST /v1/fit        a config (JSON, the YAML schema) -> the single-fit result
                        (?trace=false leaves out the step-by-step trace)
    POST /v1/fit_batch  a config with batch: -> the summary (?per_fit=true adds arrays)
    POST /v1/step       {"config": ..., "state": null | state} -> one compiled step
    GET  /v1/schema     the config's JSON Schema
    GET  /healthz, GET /metrics (Prometheus), GET / (the seed's page)

Concurrent /v1/fit requests are batched dynamically (``FitBatcher``). Requests are
JSON only: a config is always a JSON object, never a path, so no request can make
the server read or write a file. Errors are JSON ``{"error": "..."}``: 400 malformed
JSON, 413 body too large, 422 invalid config, 401/403 token, 503 queue full (with
Retry-After), 504 timeout; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import ipaddress
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from jaxfit.jsonout import plain


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_steps: int = 100_000
    max_fits: int = 1_000_000
    max_per_fit: int = 10_000
    timeout_s: float = 30.0


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(
    limits: Limits = Limits(),
    token: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_queue: int = 1024,
) -> Any:
    """The ASGI app (Starlette)."""
    import jax
    import jax.monitoring
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from jaxfit.batch import fit_batch
    from jaxfit.config import Config, ConfigError, json_schema, load_config
    from jaxfit.core.engine import opt_state_tree, state_from_dict, state_to_dict
    from jaxfit.problem import dtype_of, make_problem, precision, spec_of
    from jaxfit.service.batcher import FitBatcher, QueueFull
    from jaxfit.service.metrics import Metrics
    from jaxfit.single import make_state, make_step

    class JSONResponse(Response):
        """Strict JSON: non-finite numbers (a diverged fit's loss) as null."""

        media_type = "application/json"

        def render(self, content: Any) -> bytes:
            return encode(content)

    def encode(value: Any) -> bytes:
        """Strict JSON (orjson writes non-finite floats, a diverged fit's loss, as null)."""
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    async def send_json(send: Any, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
        head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
        head += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": raw})

    metrics = Metrics()
    jax.monitoring.register_event_duration_secs_listener(metrics.compiled)
    batcher = FitBatcher(max_batch, max_wait_ms, max_queue, timeout_s=limits.timeout_s)
    batch_lock = asyncio.Lock()

    async def read_json(headers: list[tuple[bytes, bytes]], receive: Any) -> Any:
        """The request body as JSON, refused (413) past the size cap."""
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
                raise HTTPError(
                    413,
                    f"request body is {int(value):,} bytes; at most {limits.max_body_bytes:,} are accepted",
                )
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client went away before sending the whole body")
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limits.max_body_bytes:
                raise HTTPError(413, f"request body is over {limits.max_body_bytes:,} bytes")
        try:
            return orjson.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise HTTPError(400, f"malformed JSON: {err}") from None

    async def request_json(request: Request) -> Any:
        return await read_json(request.scope["headers"], request.receive)

    def config_of(raw: Any, what: str = "body") -> Config:
        if not isinstance(raw, dict):
            raise HTTPError(422, f"{what}: a config must be a JSON object (got {type(raw).__name__})")
        try:
            config = load_config(raw)
        except ConfigError as err:
            raise HTTPError(422, str(err).replace("<dict>: ", "")) from None
        if config.train.max_steps > limits.max_steps:
            raise HTTPError(
                422,
                f"train.max_steps: at most {limits.max_steps:,} per request (got {config.train.max_steps:,})",
            )
        return config

    def too_late() -> HTTPError:
        return HTTPError(504, f"the request took longer than {limits.timeout_s:g} s")

    async def timed(coro: Any) -> Any:
        try:
            async with asyncio.timeout(limits.timeout_s):
                return await coro
        except TimeoutError:
            raise too_late() from None

    async def fit(scope: dict, receive: Any) -> bytes:
        """POST /v1/fit -> the response body. The hot path under load, so it runs
        without the framework's per-request objects (a batched fit costs a few us)."""
        config = config_of(await read_json(scope["headers"], receive))
        if config.batch is not None:
            raise HTTPError(422, "batch: use POST /v1/fit_batch for a config with a batch section")
        query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
        trace = query.get("trace", ["true"])[-1].lower() not in ("0", "false", "no")
        try:
            return await batcher.fit(config, trace)  # the batcher keeps the time limit
        except QueueFull:
            raise HTTPError(503, "the fit queue is full; retry shortly", {"Retry-After": "1"}) from None
        except TimeoutError:
            raise too_late() from None

    async def fit_batch_route(request: Request) -> Response:
        config = config_of(await request_json(request))
        if config.batch is None:
            raise HTTPError(422, "batch: missing; POST /v1/fit runs a single fit")
        if config.batch.fits > limits.max_fits:
            raise HTTPError(
                422, f"batch: {config.batch.fits:,} fits; at most {limits.max_fits:,} per request"
            )
        per_fit = request.query_params.get("per_fit", "false").lower() in ("1", "true", "yes")
        if per_fit and config.batch.fits > limits.max_per_fit:
            raise HTTPError(
                422,
                f"per_fit: only for batches of up to {limits.max_per_fit:,} fits (this has {config.batch.fits:,})",
            )
        async with batch_lock:
            result = await timed(asyncio.get_running_loop().run_in_executor(None, fit_batch, config))
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
        return JSONResponse(body)

    def step_once(config: Config, state_json: Any) -> dict[str, Any]:
        with precision(config):
            problem = make_problem(config)
            if state_json is None:
                state = make_state(config, problem)
            else:
                if not isinstance(state_json, dict):
                    raise HTTPError(
                        422, "state: must be a JSON object from a previous /v1/step response, or null"
                    )
                dtype = dtype_of(config)
                try:
                    fields = {
                        "params": {
                            n: np.asarray(state_json["params"][n], dtype) for n in config.train.trainable
                        },
                        "opt_state": [np.asarray(v) for v in state_json["opt_state"]],
                        "loss": np.asarray(state_json["loss"], dtype),
                        "grad": {n: np.asarray(state_json["grad"][n], dtype) for n in config.train.trainable},
                        "step_size": {
                            n: np.asarray(state_json["step_size"][n], dtype) for n in config.train.trainable
                        },
                        "step": np.asarray(state_json["step"], np.int32),
                        "status": np.asarray(state_json["status"], np.int32),
                    }
                    state = state_from_dict(fields, opt_state_tree(spec_of(config), dtype))
                except (KeyError, TypeError, ValueError) as err:
                    raise HTTPError(
                        422, f"state: does not match the config's trainable set and optimizer ({err})"
                    ) from None
            before = state
            after = make_step(config)(state, problem)
            out = jax.device_get(state_to_dict(after))
        return plain(
            {
                "state": out,
                "before": {
                    "params": jax.device_get(before.params),
                    "loss": jax.device_get(before.loss),
                    "grad": jax.device_get(before.grad),
                },
            }
        )

    async def step(request: Request) -> Response:
        body = await request_json(request)
        if not isinstance(body, dict) or "config" not in body:
            raise HTTPError(422, 'body: expected {"config": {...}, "state": null | {...}}')
        config = config_of(body["config"], "config")
        if config.batch is not None:
            raise HTTPError(422, "batch: /v1/step takes a single-fit config")
        loop = asyncio.get_running_loop()
        return JSONResponse(await timed(loop.run_in_executor(None, step_once, config, body.get("state"))))

    async def schema(request: Request) -> Response:
        return JSONResponse(json_schema())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "devices": len(jax.local_devices()), "queue": batcher.depth})

    async def metrics_route(request: Request) -> Response:
        return PlainTextResponse(
            metrics.render(batcher.batch_count, batcher.batch_fits, batcher.depth),
            media_type="text/plain; version=0.0.4",
        )

    async def page(request: Request) -> Response:
        return HTMLResponse(
            resources.files("jaxfit.service").joinpath("static/index.html").read_text(encoding="utf-8")
        )

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/metrics", metrics_route),
        Route("/v1/schema", schema),
        Route("/v1/fit_batch", fit_batch_route, methods=["POST"]),
        Route("/v1/step", step, methods=["POST"]),
    ]

    known = {r.path for r in routes} | {"/v1/fit"}  # metrics label by route, not by arbitrary path

    class Guard:
        """Auth, error mapping and metrics around every request."""

        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            path, t0 = scope["path"], time.perf_counter()
            status, started = 500, False

            async def send_status(message: dict) -> None:
                nonlocal status, started
                if message["type"] == "http.response.start":
                    status, started = message["status"], True
                await send(message)

            try:
                if token is not None and path != "/healthz":
                    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
                    if not header.startswith("Bearer "):
                        raise HTTPError(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
                    if not hmac.compare_digest(header[7:].encode(), token.encode()):
                        raise HTTPError(403, "wrong token")
                if path == "/v1/fit" and scope["method"] == "POST":
                    body = await fit(scope, receive)
                    status, started = 200, True
                    await send_json(send, 200, body)
                else:
                    await self.app(scope, receive, send_status)
            except HTTPError as err:  # from auth or /v1/fit (the app maps its own)
                if not started:
                    await send_json(send_status, err.status, encode({"error": err.message}), err.headers)
            except Exception:
                if not started:
                    await send_json(send_status, 500, encode({"error": "internal error"}))
            finally:
                metrics.observe(path if path in known else "other", status, time.perf_counter() - t0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, batcher.warm_up, load_config(None))
        # What start-up built lives as long as the server: keep it out of GC passes. A
        # request allocates hundreds of short-lived objects: collect the young ones
        # every 10,000 allocations, not 700 (measured: -15% CPU per request).
        gc.freeze()
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        batcher.start()
        yield
        await batcher.stop()

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPError)
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    async def internal_error(request: Request, err: Exception) -> Response:
        return JSONResponse({"error": "internal error"}, status_code=500)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPError: http_error, Exception: internal_error},
    )
    return Guard(app)


def serve(argv: list[str]) -> int:
    """``python -m jaxfit serve``."""
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(
        prog="python -m jaxfit serve",
        description="Serve warm compiled fits over HTTP (and the seed's page at /).",
    )
    ap.add_argument(
        "--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need a token)"
    )
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument(
        "--token",
        default=os.environ.get("JAXFIT_TOKEN"),
        help="bearer token required on every request but /healthz (or JAXFIT_TOKEN)",
    )
    ap.add_argument("--max-batch", type=int, default=64, help="most fit requests in one compiled call")
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="how long to gather requests into a batch")
    ap.add_argument("--max-queue", type=int, default=1024, help="waiting fit requests before 503")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="per-request time limit (504)")
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body cap (413)")
    ap.add_argument("--max-steps", type=int, default=100_000, help="train.max_steps cap per request (422)")
    ap.add_argument(
        "--max-fits", type=int, default=1_000_000, help="fits cap per /v1/fit_batch request (422)"
    )
    args = ap.parse_args(argv)
    for name in ("max_batch", "max_queue", "port"):
        if getattr(args, name) < 1:
            print(f"jaxfit: error: --{name.replace('_', '-')}: must be at least 1", file=sys.stderr)
            return 2
    if not is_loopback(args.host) and not args.token:
        print(
            f"jaxfit: error: --host {args.host} is not a loopback address: set --token or JAXFIT_TOKEN to serve beyond this machine",
            file=sys.stderr,
        )
        return 2
    try:
        import orjson  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        print(
            'jaxfit: error: serving needs the serve extra: pip install "jaxfit[serve]" (starlette, uvicorn, orjson)',
            file=sys.stderr,
        )
        return 2
    limits = Limits(args.max_body_bytes, args.max_steps, args.max_fits, timeout_s=args.timeout_s)
    app = create_app(limits, args.token, args.max_batch, args.max_wait_ms, args.max_queue)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # no proxy is trusted: client addresses are the socket's
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    return 0
