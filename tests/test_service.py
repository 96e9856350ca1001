"""The HTTP service, as a real server process on loopback."""

import asyncio
import json
import re
import signal
import socket
import subprocess
import time

import pytest
from conftest import ENV, JAXFIT, ROOT, run_jaxfit

import jaxfit

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args, env=None, cwd=ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*JAXFIT, "serve", "--port", str(self.port), *args],
            cwd=cwd,
            env={**ENV, "JAX_NUM_CPU_DEVICES": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.proc.stderr.read()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def post(server, path, body, **kw):
    return httpx.post(
        server.url + path,
        content=body if isinstance(body, (bytes, str)) else json.dumps(body),
        timeout=60,
        **kw,
    )


def assert_same_fit(got, cfg):
    solo = jaxfit.fit(cfg)
    assert got["steps"] == solo.steps and got["status"] == solo.status.label
    assert got["params"] == solo.params  # identical parameters
    # the final SSR from vectorised vs scalar code may differ in the last bit
    assert got["loss"] == pytest.approx(solo.loss, rel=1e-6, abs=1e-12)
    assert [r["step_size"] for r in got["trace"]] == [r["step_size"] for r in solo.to_dict()["trace"]]


def test_fit_equals_jaxfit_fit(server):
    for cfg in (
        {},
        {"params": {"b3": 5.0}, "train": {"learning_rate": 0.05}},
        {"train": {"trainable": ["w3", "b3"]}},
        {"precision": "float64", "train": {"trainable": ["w1", "b3"], "optimizer": {"name": "adam"}}},
        {"train": {"optimizer": {"name": "momentum", "nesterov": True}, "learning_rate": 0.02}},
    ):
        r = post(server, "/v1/fit", cfg)
        assert r.status_code == 200, r.text
        assert_same_fit(r.json(), cfg)


def test_a_response_says_how_long_it_compiled_and_ran(server):
    cfg = {"train": {"trainable": ["w2", "b2"], "learning_rate": 0.05}, "precision": "float64"}
    first, again = (post(server, "/v1/fit", cfg).json() for _ in range(2))
    assert first["compile_s"] > 0.05  # a program this server had not compiled yet
    assert again["compile_s"] == 0.0  # the same program, kept
    assert first["run_s"] > 0 and again["run_s"] > 0
    assert first["params"] == again["params"]


def test_diverged_fits_are_strict_json(server):
    from test_cli import strict_json

    r = post(server, "/v1/fit", {"train": {"learning_rate": 1.0}})
    assert r.status_code == 200, r.text
    out = strict_json(r.text)
    assert out["status"] == "diverged" and out["loss"] is None
    r = post(server, "/v1/fit_batch?per_fit=true", {"batch": {"learning_rate": [0.1, 1.0]}})
    body = strict_json(r.text)
    assert body["status_counts"]["diverged"] == 1 and None in body["per_fit"]["loss"]


def test_fit_batch_summary_and_per_fit(server):
    cfg = {"batch": {"init": {"b3": {"linspace": [-10, 10, 101]}}}}
    r = post(server, "/v1/fit_batch?per_fit=true", cfg)
    assert r.status_code == 200, r.text
    body = r.json()
    local = jaxfit.fit_batch(cfg)
    assert body["status_counts"] == local.status_counts() and body["fits"] == 101
    assert body["per_fit"]["steps"] == local.steps.tolist()
    assert body["per_fit"]["params"]["b3"] == local.params["b3"].tolist()


def test_step_walks_the_seed_path(server):
    state, seen = None, []
    for _ in range(3):
        r = post(server, "/v1/step", {"config": {}, "state": state})
        assert r.status_code == 200, r.text
        state = r.json()["state"]
        seen.append(round(state["params"]["b3"], 2))
    assert seen == [1.57, 2.19, 2.44]


def test_levenberg_marquardt_steps_through_the_service_as_make_step_takes_them(server):
    """Its state carries the normal equations of the current point (a list per entry
    in ``opt_state``): they round-trip, and each step equals the local one bit for bit."""
    cfg = {"train": {"optimizer": "lm", "trainable": ["b3", "w3"]}}
    problem = jaxfit.make_problem(cfg)
    local, step = jaxfit.make_state(cfg, problem), jaxfit.make_step(cfg)
    state = None
    for _ in range(3):
        r = post(server, "/v1/step", {"config": cfg, "state": state})
        assert r.status_code == 200, r.text
        state = r.json()["state"]
        local = step(local, problem)
        assert state["params"] == {n: float(v) for n, v in local.params.items()}
        assert state["loss"] == float(local.loss)
    assert any(isinstance(entry, list) for entry in state["opt_state"])
    state["opt_state"] = [[1.0] if isinstance(e, list) else e for e in state["opt_state"]]
    r = post(server, "/v1/step", {"config": cfg, "state": state})
    assert r.status_code == 422 and r.json()["error"].startswith("state.opt_state["), r.text


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s["params"].update(b3=[1.0, 2.0]), "state.params.b3"),
        (lambda s: s.update(loss=[[1.0]]), "state.loss"),
        (lambda s: s.update(step="three"), "state.step"),
        (lambda s: s.update(opt_state=[1.0, 2.0, 3.0]), "state.opt_state"),
        (lambda s: s["grad"].pop("b3"), "state.grad"),
        (lambda s: s.pop("step_size"), "state.step_size"),
    ],
)
def test_step_with_a_malformed_state_is_422_naming_the_field(server, edit, field):
    r = post(server, "/v1/step", {"config": {}, "state": None})
    state = r.json()["state"]
    edit(state)
    r = post(server, "/v1/step", {"config": {}, "state": state})
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(field), r.text


def test_schema_health_metrics(server):
    assert httpx.get(server.url + "/v1/schema").json()["properties"]["train"]
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    post(server, "/v1/fit", {})
    text = httpx.get(server.url + "/metrics").text
    assert 'jaxfit_requests_total{endpoint="/v1/fit",status="200"}' in text
    for name in (
        "jaxfit_request_seconds_bucket",
        "jaxfit_compilations_total",
        "jaxfit_batch_size_count",
        "jaxfit_queue_depth",
    ):
        assert name in text
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "shows the seed's network" in page.text  # the page says what it covers
    # self-contained: no external scripts, styles or images (users may be offline)
    assert not re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//', page.text) and "<link" not in page.text


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/fit", "{not json", 400, "malformed JSON"),
        ("/v1/fit", {"train": {"learning_rate": -1}}, 422, "train.learning_rate"),
        ("/v1/fit", {"train": {"max_steps": 10**7}}, 422, "train.max_steps"),
        ("/v1/fit", "[1, 2]", 422, "JSON object"),
        ("/v1/fit", '"/etc/passwd"', 422, "JSON object"),
        ("/v1/fit", {"batch": {"count": 2}}, 422, "fit_batch"),
        ("/v1/fit_batch", {}, 422, "batch"),
        ("/v1/fit_batch", {"batch": {"count": 2000000}}, 422, "at most"),
        ("/v1/fit_batch?per_fit=true", {"batch": {"count": 20000}}, 422, "per_fit"),
        ("/v1/step", {"config": {}, "state": {"params": {}}}, 422, "state"),
        ("/v1/step", {"state": None}, 422, "config"),
        ("/v1/fit", "x" * (2 << 20), 413, "bytes"),
    ],
)
def test_user_errors(server, path, body, status, needle):
    r = post(server, path, body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"] and "Traceback" not in r.text


def slow_burst(server, n):
    """``n`` concurrent /v1/fit requests, each 100,000 steps long."""

    async def burst():
        async with httpx.AsyncClient(timeout=60) as client:
            cfg = json.dumps({"train": {"learning_rate": 1e-4, "max_steps": 100000, "tolerance": 1e-12}})
            return await asyncio.gather(*[client.post(server.url + "/v1/fit", content=cfg) for _ in range(n)])

    return asyncio.run(burst())


def test_queue_full_is_503_with_retry_after():
    s = Server("--max-queue", "1", "--max-wait-ms", "50", "--max-batch", "1")
    try:
        replies = slow_burst(s, 30)
        codes = {r.status_code for r in replies}
        assert codes <= {200, 503} and 503 in codes and 200 in codes
        busy = next(r for r in replies if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "full" in busy.json()["error"]
    finally:
        s.stop()


def test_requests_past_the_time_limit_get_504_and_the_server_carries_on():
    s = Server("--timeout-s", "0.05", "--max-batch", "1")
    try:
        replies = slow_burst(s, 80)
        codes = [r.status_code for r in replies]
        assert 504 in codes and set(codes) <= {200, 504}, codes
        late = next(r for r in replies if r.status_code == 504)
        assert "longer than 0.05 s" in late.json()["error"]
        assert post(s, "/v1/fit", {}).json()["status"] == "converged"  # still serving
    finally:
        s.stop()


def test_token_required_off_loopback_and_checked():
    p = run_jaxfit(
        "serve", "--host", "0.0.0.0", env={k: v for k, v in ENV.items() if k != "JAXFIT_TOKEN"}, timeout=60
    )
    assert p.returncode == 2 and "token" in p.stderr and "Traceback" not in p.stderr
    s = Server("--token", "s3cret")
    try:
        assert httpx.get(s.url + "/healthz").status_code == 200
        assert post(s, "/v1/fit", {}).status_code == 401
        assert post(s, "/v1/fit", {}, headers={"Authorization": "Bearer nope"}).status_code == 403
        assert post(s, "/v1/fit", {}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    finally:
        s.stop()


def test_sigterm_finishes_in_flight_requests():
    s = Server()
    try:

        async def run():
            async with httpx.AsyncClient(timeout=60) as client:
                cfg = {
                    "batch": {"init": {"b3": {"linspace": [-10, 10, 200000]}}, "learning_rate": [0.001]},
                    "train": {"max_steps": 3000},
                }
                task = asyncio.create_task(client.post(s.url + "/v1/fit_batch", content=json.dumps(cfg)))
                await asyncio.sleep(0.5)
                s.proc.send_signal(signal.SIGTERM)
                return await task

        reply = asyncio.run(run())
        assert reply.status_code == 200 and reply.json()["fits"] == 200000
        assert s.proc.wait(timeout=60) == 0
    finally:
        s.stop()


def test_concurrent_fits_are_batched_and_each_equals_its_solo_fit():
    s = Server("--max-batch", "64", "--max-wait-ms", "5")
    try:
        starts = [round(-10 + 20 * i / 399, 6) for i in range(400)]

        async def client_run(client, chunk):
            return [
                (b, await client.post(s.url + "/v1/fit", content=json.dumps({"params": {"b3": b}})))
                for b in chunk
            ]

        async def run():
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
                chunks = [starts[i::40] for i in range(40)]  # 40 clients x 10 requests
                return [
                    x for part in await asyncio.gather(*[client_run(client, c) for c in chunks]) for x in part
                ]

        replies = asyncio.run(run())
        assert len(replies) == 400 and all(r.status_code == 200 for _, r in replies)
        for b, r in replies:
            got, solo = r.json(), jaxfit.fit({"params": {"b3": b}})
            assert (got["steps"], got["status"], got["params"]["b3"]) == (
                solo.steps,
                solo.status.label,
                solo.params["b3"],
            )
        text = httpx.get(s.url + "/metrics").text
        total = float(
            next(line.split()[1] for line in text.splitlines() if line.startswith("jaxfit_batch_size_sum"))
        )
        count = float(
            next(line.split()[1] for line in text.splitlines() if line.startswith("jaxfit_batch_size_count"))
        )
        assert total == 400 and total / count > 1, (total, count)
    finally:
        s.stop()


DECAY = "import jax.numpy as jnp\ndef predict(x, a, k, c):\n    return a * jnp.exp(-k * x) + c\n"


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    (folder / "decay_model.py").write_text(DECAY)
    s = Server("--model", "decay_model:predict", "--max-hidden", "8", cwd=folder)
    yield s, folder
    s.stop()


def test_a_registered_model_and_the_network_family_fit_over_http(model_server):
    server, folder = model_server
    decay = {
        "model": {"function": "decay_model:predict"},
        "data": {"x": [0, 1, 2, 3, 4], "y": [3.0, 2.1, 1.5, 1.2, 1.0]},
        "params": {"a": 1.0, "k": 0.3, "c": 0.0},
        "train": {"trainable": "all", "learning_rate": 0.01, "tolerance": 1e-5, "max_steps": 50000},
    }
    r = post(server, "/v1/fit", decay)
    assert r.status_code == 200, r.text
    local = jaxfit.fit({**decay, "model": {"function": str(folder / "decay_model.py") + ":predict"}})
    got = r.json()
    assert got["status"] == local.status.label and got["steps"] == local.steps
    # batched on the server: vectorised code may round the last float32 bits differently
    assert got["params"] == pytest.approx(local.params, rel=1e-5)
    net = {"model": {"hidden": 3, "activation": "tanh"}, "train": {"trainable": "all", "learning_rate": 0.05}}
    r = post(server, "/v1/fit", net)
    assert r.status_code == 200, r.text
    local = jaxfit.fit(net)
    assert r.json()["steps"] == local.steps and r.json()["params"] == pytest.approx(local.params, rel=1e-5)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": {"function": "other_model:predict"}}, "model.function"),
        ({"model": {"function": "os:system"}}, "model.function"),
        ({"data": {"file": "/etc/passwd", "x": "a", "y": "b"}}, "data.file"),
        ({"data": {"file": "decay_model.py"}}, "data.file"),
        ({"model": {"hidden": 9}}, "model.hidden"),
    ],
)
def test_requests_may_name_only_registered_models_and_never_files(model_server, body, needle):
    server, _ = model_server
    r = post(server, "/v1/fit", body)
    assert r.status_code == 422 and r.json()["error"].startswith(needle), r.text


def test_serve_refuses_a_model_that_does_not_import():
    p = run_jaxfit("serve", "--model", "no_such_module:f", "--port", str(free_port()), timeout=60)
    assert p.returncode == 2 and "no_such_module" in p.stderr and "Traceback" not in p.stderr


def test_responses_carry_the_errors(server):
    r = post(server, "/v1/fit", {"data": {"x": [0.0, 0.5, 1.0], "y": [0.0, 1.0, 0.0], "sigma": 2.0}})
    body = r.json()
    solo = jaxfit.fit({"data": {"x": [0.0, 0.5, 1.0], "y": [0.0, 1.0, 0.0], "sigma": 2.0}})
    assert body["stderr"]["b3"] == pytest.approx(solo.stderr["b3"], rel=1e-6) and body["dof"] == 2
    assert body["chisqr"] == pytest.approx(solo.chisqr, rel=1e-6)
    r = post(server, "/v1/fit_batch?per_fit=true", {"batch": {"init": {"b3": {"values": [0.0, 1.0]}}}})
    per_fit = r.json()["per_fit"]
    assert len(per_fit["stderr"]["b3"]) == 2 and per_fit["dof"] == [2, 2]


def test_serve_says_where_it_listens_and_when_it_stops():
    s = Server()
    try:
        ready = s.proc.stdout.readline()
        assert ready.startswith("jaxfit serve: ready at " + s.url + "/") and "models: network" in ready
    finally:
        s.stop()
    rest = s.proc.stdout.read()
    assert "jaxfit serve: shutting down" in rest and rest.rstrip().endswith("jaxfit serve: stopped")


def test_served_models_are_listed_and_a_fit_brings_its_curve_and_band(model_server):
    import numpy as np

    server, _ = model_server
    listed = httpx.get(server.url + "/v1/models").json()["models"]
    assert [(m["name"], m["parameters"]) for m in listed] == [("decay_model:predict", ["a", "k", "c"])]
    body = {
        "model": {"function": "decay_model:predict"},
        "data": {"x": [0, 1, 2, 3, 4, 5], "y": [3.0, 2.1, 1.5, 1.2, 1.05, 0.98]},
        "params": {"a": 1.0, "k": 1.0, "c": 0.0},
        "train": {"trainable": "all", "optimizer": "lm"},
        "precision": "float64",
    }
    r = post(server, "/v1/fit?trace=false&curve=50", body)
    assert r.status_code == 200, r.text
    out = r.json()
    curve, p = out["curve"], out["params"]
    x = np.asarray(curve["x"])
    assert x[0] == 0 and x[-1] == 5 and len(x) == 50
    np.testing.assert_allclose(curve["y"], p["a"] * np.exp(-p["k"] * x) + p["c"], rtol=1e-12)
    assert all(b > 0 for b in curve["band"])
    bad = post(server, "/v1/fit?curve=1", body)
    assert bad.status_code == 422 and "curve: a whole number from 2 to 2000" in bad.json()["error"]
