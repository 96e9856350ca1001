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
import functools
import gc
import time
from typing import Any


class Guard:
    """The outermost ASGI app: token, then the route (``/v1/fit`` straight to its
    handler, the rest through Starlette), errors mapped to responses, metrics."""

    def __init__(self, app: Any, state: Any, known: set[str]):
        from jaxfit.service import guard, handlers

        self.app, self.state, self.known = app, state, known
        self.guard, self.fit = guard, handlers.fit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        guard = self.guard
        path, t0 = scope["path"], time.perf_counter()
        status, started = 500, False

        async def send_status(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            guard.check_token(scope, self.state.token)
            if path == "/v1/fit" and scope["method"] == "POST":
                body = await self.fit(self.state, scope, receive)
                await guard.send_json(send_status, 200, body)
            else:
                await self.app(scope, receive, send_status)
        except Exception as err:
            if not started:
                code, body, headers = guard.error_response(err, self.state.limits.timeout_s)
                await guard.send_json(send_status, code, body, headers)
        finally:
            self.state.metrics.observe(
                path if path in self.known else "other", status, time.perf_counter() - t0
            )


def create_app(
    limits: Any = None,
    token: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_queue: int = 1024,
    models: dict[str, str] | None = None,
) -> Any:
    """The ASGI app: Starlette routes behind a ``Guard``, sharing one ``handlers.State``."""
    import jax.monitoring
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from jaxfit.plan.lowering import plan_fit
    from jaxfit.service import guard, handlers
    from jaxfit.service.batcher import FitBatcher
    from jaxfit.service.metrics import Metrics

    limits = limits or guard.Limits()
    state = handlers.State(
        limits=limits,
        batcher=FitBatcher(max_batch, max_wait_ms, max_queue, timeout_s=limits.timeout_s),
        metrics=Metrics(),
        token=token,
        models=dict(models or {}),
    )
    jax.monitoring.register_event_duration_secs_listener(state.metrics.compiled)

    def route(path: str, handler: Any, methods: list[str] | None = None) -> Route:
        endpoint = functools.partial(handler, state)
        functools.update_wrapper(endpoint, handler)
        return Route(path, endpoint, methods=methods)

    routes = [
        route("/", handlers.page),
        route("/models", handlers.models_page),
        route("/v1/models", handlers.models),
        route("/healthz", handlers.healthz),
        route("/metrics", handlers.metrics),
        route("/v1/schema", handlers.schema),
        route("/v1/fit_batch", handlers.fit_batch, ["POST"]),
        route("/v1/step", handlers.step, ["POST"]),
    ]
    known = {r.path for r in routes} | {"/v1/fit"}  # metrics label by route, not by arbitrary path

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, state.batcher.warm_up, plan_fit(None))
        # What start-up built lives as long as the server: keep it out of GC passes. A
        # request allocates hundreds of short-lived objects: collect the young ones
        # every 10,000 allocations, not 700 (less CPU per request: README, "The service").
        gc.freeze()
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        state.batcher.start()
        yield
        await state.batcher.stop()

    async def on_error(request: Any, err: Exception) -> Response:
        # errors inside Starlette's routes: the same mapping as the Guard's
        code, body, headers = guard.error_response(err, limits.timeout_s)
        return Response(body, status_code=code, headers=headers, media_type="application/json")

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: on_error})
    return Guard(app, state, known)


def _parser() -> Any:
    import argparse
    import os

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
    ap.add_argument("--max-hidden", type=int, default=32, help="model.hidden cap per request (422)")
    ap.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a model function requests may name (repeatable; imported at start from the working directory or sys.path)",
    )
    ap.add_argument(
        "--max-fits", type=int, default=1_000_000, help="fits cap per /v1/fit_batch request (422)"
    )
    return ap


def serve(argv: list[str]) -> int:
    """``python -m jaxfit serve``."""
    import sys

    args = _parser().parse_args(argv)
    for name in ("max_batch", "max_queue", "port"):
        if getattr(args, name) < 1:
            print(f"jaxfit: error: --{name.replace('_', '-')}: must be at least 1", file=sys.stderr)
            return 2
    from jaxfit.service.guard import is_loopback

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
    from jaxfit.service.guard import Limits
    from jaxfit.service.handlers import register_models

    try:
        models = register_models(args.models)
    except ValueError as err:
        print(f"jaxfit: error: --model {err}", file=sys.stderr)
        return 2
    limits = Limits(
        args.max_body_bytes,
        args.max_steps,
        args.max_fits,
        timeout_s=args.timeout_s,
        max_hidden=args.max_hidden,
    )
    app = create_app(limits, args.token, args.max_batch, args.max_wait_ms, args.max_queue, models)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # no proxy is trusted: client addresses are the socket's
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    names = ", ".join(["network", *sorted(models)])
    server = _talking_server()(config, f"http://{host}:{args.port}/", names)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: its signal, handled, comes back as one
        server.run()
    return 0 if server.started else 1


def _talking_server() -> type:
    """uvicorn's server, saying where it listens once it does, and when it stops."""
    import uvicorn

    class Talking(uvicorn.Server):
        def __init__(self, config: Any, url: str, models: str) -> None:
            super().__init__(config)
            self.url, self.models = url, models

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(f"jaxfit serve: ready at {self.url} (models: {self.models}; Ctrl-C stops)", flush=True)

        async def shutdown(self, sockets: Any = None) -> None:
            print("jaxfit serve: shutting down (finishing requests in flight)", flush=True)
            await super().shutdown(sockets)
            print("jaxfit serve: stopped", flush=True)

    return Talking
