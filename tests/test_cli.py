"""The command line, run as a real process."""

import json

import pytest
import reference as ref
from conftest import run_jaxfit


def test_seed_run_prints_the_seed_table():
    p = run_jaxfit("--config", "configs/b3.yaml")
    assert p.returncode == 0, p.stderr
    assert "Starting SSR: 20.4236" in p.stdout
    assert "-15.6551" in p.stdout and "-1.56551" in p.stdout and "2.19172" in p.stdout
    assert "after 10 steps: converged" in p.stdout


def test_json_output():
    p = run_jaxfit("--config", "configs/b3.yaml", "--format", "json", "--set", "train.learning_rate=0.05")
    out = json.loads(p.stdout)
    assert set(out["params"]) == set(ref.NAMES) and out["status"] == "converged"
    assert out["trace"][0]["step"] == 1 and out["trace"][0]["loss"] == pytest.approx(20.424, abs=0.01)
    assert out["trace"][0]["step_size"]["b3"] == pytest.approx(0.05 * -15.655, abs=1e-3)
    assert out["steps"] == len(out["trace"])


def test_schema_is_json_schema():
    p = run_jaxfit("schema")
    schema = json.loads(p.stdout)
    assert p.returncode == 0 and "train" in schema["properties"]


def test_batch_json_summary(tmp_path):
    p = run_jaxfit(
        "--config",
        "configs/b3_sweep.yaml",
        "--set",
        "batch.init.b3.linspace=[-10, 10, 5001]",
        "--format",
        "json",
        "--output",
        str(tmp_path / "run"),
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["fits"] == 5001 and s["status_counts"]["converged"] == 5001
    assert len(s["minima"]) == 1 and s["minima"][0]["params"]["b3"] == pytest.approx(2.609185, abs=2e-4)
    for key in ("best", "devices", "compile_s", "run_s"):
        assert key in s
    assert {"config.yaml", "fits.npz", "fits.csv", "summary.json"} <= {
        f.name for f in (tmp_path / "run").iterdir()
    }


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").write_text("keep")
    p = run_jaxfit("--output", str(tmp_path), "--format", "json")
    assert p.returncode == 2 and "--overwrite" in p.stderr
    assert (tmp_path / "x").read_text() == "keep"


def strict_json(text):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_diverged_fit_json_is_strict(tmp_path):
    p = run_jaxfit("--set", "train.learning_rate=1.0", "--format", "json", "--output", str(tmp_path / "run"))
    out = strict_json(p.stdout)
    assert out["status"] == "diverged" and out["loss"] is None and out["steps"] > 0
    assert strict_json((tmp_path / "run" / "result.json").read_text())["loss"] is None


def test_batch_csv_has_plain_values_any_csv_reader_takes(tmp_path):
    import csv
    import io

    p = run_jaxfit(
        "--config",
        "configs/b3_sweep.yaml",
        "--set",
        "batch.init.b3.linspace=[-10, 10, 7]",
        "--set",
        "batch.learning_rate=[0.1, 1.5]",
        "--format",
        "csv",
        "--output",
        str(tmp_path / "run"),
    )
    assert p.returncode == 0, p.stderr
    for text in (p.stdout, (tmp_path / "run" / "fits.csv").read_text()):
        assert "'" not in text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 14
        assert {r["status"] for r in rows} == {"converged", "diverged"}
        converged = [r for r in rows if r["status"] == "converged"]
        assert all(abs(float(r["final_b3"]) - 2.609185) < 1e-3 for r in converged), converged[0]


def test_loose_ends_through_the_real_cli(tmp_path):
    (tmp_path / "m.py").write_text("def predict(x, a=1.0):\n    return a * x\n")
    for extra in ("hidden: 2", "activation: softplus"):
        (tmp_path / "c.yaml").write_text(f"model: {{function: 'm:predict', {extra}}}\n")
        p = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache")
        assert p.returncode == 2 and "a function model takes no" in p.stderr and p.stderr.count("\n") == 1
    p = run_jaxfit("--help")
    assert "softplus network" not in p.stdout and "Levenberg-Marquardt" in p.stdout


def test_error_types_and_configs_load_without_jax():
    from conftest import run_python

    code = (
        "import jaxfit, sys; jaxfit.ConfigError; jaxfit.Status; "
        "jaxfit.load_config('configs/b3.yaml'); print('jax' in sys.modules)"
    )
    p = run_python(code)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr
