"""Many data sets in one batch: a group column, padded and masked data sets, one fit each."""

import csv
import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from conftest import ENV, JAXFIT, run_jaxfit

import jaxfit
from jaxfit.plan.datafile import padded_groups
from jaxfit.plan.lowering import batch_data, hyper_of, plan_of, precision, spec_of
from jaxfit.plan.sweep import tables_as
from jaxfit.run.batching import Inputs, Layout, Program, run_chunks

MODEL = "import jax.numpy as jnp\ndef predict(x, a=1.0, k=0.3, c=0.0):\n    return a * jnp.exp(-k * x) + c\n"


def write_groups(folder, groups=1000, seed=0):
    """``groups`` decay curves of 3 to 50 points each, rows shuffled; returns them by label."""
    rng = np.random.default_rng(seed)
    rows, by_label = [], {}
    for g in range(groups):
        n = int(rng.integers(3, 51))
        a, k, c = rng.uniform(0.5, 3), rng.uniform(0.1, 1.5), rng.uniform(-1, 1)
        x = np.round(rng.uniform(0, 5, n), 6)
        y = np.round(a * np.exp(-k * x) + c + rng.normal(0, 0.05, n), 6)
        label = f"s{g:04d}"
        by_label[label] = (x, y)
        rows += [(label, xi, yi) for xi, yi in zip(x, y)]
    order = rng.permutation(len(rows))
    with open(folder / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "id", "v"])
        for i in order:
            w.writerow([rows[i][1], rows[i][0], rows[i][2]])
    (folder / "decay_model.py").write_text(MODEL)
    return by_label


def grouped_config(folder, **extra):
    text = (
        'model: {function: "decay_model:predict"}\n'
        "data: {file: curves.csv, x: t, y: v, group: id}\n"
        "train: {trainable: all, optimizer: adam, learning_rate: 0.05, tolerance: 1.0e-6, max_steps: 300}\n"
    )
    path = folder / "groups.yaml"
    path.write_text(text)
    return jaxfit.load_config(path, [f"{k}={v}" for k, v in extra.items()])


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    folder = tmp_path_factory.mktemp("groups")
    return folder, write_groups(folder)


def test_every_fit_loss_is_the_ssr_over_its_own_points(thousand):
    folder, by_label = thousand
    cfg = grouped_config(folder, precision="float64")
    with jax.enable_x64(True):
        r = jaxfit.fit_batch(cfg)
    assert r.fits == 1000 and len(set(r.group.tolist())) == 1000
    for i, label in enumerate(r.group):
        x, y = by_label[label]
        p = {n: float(r.params[n][i]) for n in "akc"}
        ssr = float(np.sum((y - (p["a"] * np.exp(-p["k"] * x) + p["c"])) ** 2))
        assert float(r.loss[i]) == pytest.approx(ssr, rel=1e-9), label


def test_sampled_groups_equal_solo_fits(thousand):
    folder, by_label = thousand
    cfg = grouped_config(folder, precision="float64")
    with jax.enable_x64(True):
        r = jaxfit.fit_batch(cfg)
        for i in (0, 7, 123, 500, 999):
            x, y = by_label[r.group[i]]
            solo_cfg = cfg.model_dump(mode="json") | {"data": {"x": x.tolist(), "y": y.tolist()}}
            solo = jaxfit.fit(solo_cfg)
            assert solo.steps == int(r.steps[i]) and solo.status == int(r.status[i])
            for n in "akc":
                assert solo.params[n] == pytest.approx(float(r.params[n][i]), rel=1e-9, abs=1e-12)


def test_poisoned_padding_never_changes_a_fit(tmp_path):
    write_groups(tmp_path, groups=40, seed=3)
    cfg = grouped_config(tmp_path)
    plan, tables = plan_of(cfg)

    def run(data):
        chunks = {}
        with precision(cfg):
            inputs = Inputs(tables_as(tables, np.float32), hyper_of(cfg), data, np.int32(1))
            run_chunks(
                Program(spec_of(cfg), plan),
                inputs,
                layout=Layout(2, 4, 8, refill=4),
                devices=jax.local_devices()[:2],
                ranges=[(0, cfg.fits)],
                on_chunk=lambda first, chunk: chunks.__setitem__(first, chunk),
            )
        return jax.tree.map(lambda *a: np.concatenate(a), *[chunks[k] for k in sorted(chunks)])

    clean, per_group = batch_data(cfg)
    assert per_group == 1 and not clean.mask.all()  # there is padding to poison
    for poison in (np.nan, np.inf, -1e30):
        x = np.where(clean.mask, clean.x, poison).astype(np.float32)
        y = np.where(clean.mask, clean.y, poison).astype(np.float32)
        a, b = run(clean), run(clean._replace(x=x, y=y))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(u, v)
    x, y, mask, _ = padded_groups(cfg.data.table)
    most = np.bincount(cfg.data.table.group).max()  # 33 to 56 points: the bucket's 56, not 64
    assert 48 < most <= 56 and x.shape == (40, 56) and mask.sum() == len(cfg.data.table.x)


def test_groups_times_a_batch_of_starts(thousand):
    folder, _ = thousand
    cfg = grouped_config(
        folder, **{"batch.init.a.values": "[0.5, 2.0]", "batch.init.k.normal": "{mean: 0.5, std: 0.1}"}
    )
    r = jaxfit.fit_batch(cfg)
    assert r.fits == 2000
    # group-major: fits 2g and 2g+1 fit data set g from the batch's two starts
    assert r.group[0] == r.group[1] != r.group[2]
    np.testing.assert_array_equal(r.init["a"][:4], [0.5, 2.0, 0.5, 2.0])
    np.testing.assert_array_equal(r.init["k"][0:2], r.init["k"][2:4])  # the same draws for every group


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_files(thousand, tmp_path):
    folder, _ = thousand
    grouped_config(folder)  # writes groups.yaml
    args = ["--config", str(folder / "groups.yaml"), "--set", "batch.count=8", "--set", "block_size=8", "-q"]
    full = tmp_path / "full"
    p = run_jaxfit(*args, "--output", str(full), timeout=600)
    assert p.returncode == 0, p.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [*JAXFIT, *args, "--output", str(cut)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((cut / "parts").glob("0*.npz")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (cut / "summary.json").exists()
    p = run_jaxfit(*args, "--output", str(cut), "--resume", timeout=600)
    assert p.returncode == 0, p.stderr
    assert not (full / "best_trace.csv").exists()  # grouped: losses of different data sets do not rank
    for name in ("fits.npz", "fits.csv", "summary.json"):
        if name == "fits.npz":
            with np.load(full / name) as a, np.load(cut / name) as b:
                assert sorted(a.files) == sorted(b.files) and "group" in a.files
                for k in a.files:
                    np.testing.assert_array_equal(a[k], b[k])
        elif name == "summary.json":
            a, b = (json.loads((d / name).read_text()) for d in (full, cut))
            for k in ("status_counts", "best", "per_group", "groups", "steps"):
                assert a[k] == b[k]
        else:
            assert (full / name).read_text() == (cut / name).read_text()
    header = (full / "fits.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["index", "group", "status"]


BAD_DATA = [
    ("data: {file: nothere.csv, x: t, y: v}", None, "no such data file"),
    ("data: {file: d.csv, x: t, y: w}", "t,v\n1,2\n", "no column 'w'"),
    ("data: {file: d.csv, x: t, y: v}", "t,v\n1,2\n3,abc\n", "row 3, column 'v': 'abc'"),
    ("data: {file: d.csv, x: t, y: v}", "t,v\n1,2\nnan,1\n", "row 3, column 't'"),
    ("data: {file: d.csv, x: t, y: v}", "t,v\n1,\n", "row 2, column 'v'"),
    ("data: {file: d.csv, x: t, y: v}", "", "empty"),
    ("data: {file: d.csv, x: t, y: v}", "t,v\n", "no data rows"),
    ("data: {file: d.csv, x: t, y: v, group: g}", "t,v\n1,2\n", "no column 'g'"),
    ("data: {file: d.csv, x: [1, 2], y: [1, 2]}", "t,v\n1,2\n", "not both"),
    ("data: {file: sub, x: t, y: v}", None, "is a directory"),
    ("data: {x: t, y: v}", None, "data.x"),
    ("data: {x: [1, 2], y: [1, 2], group: g}", None, "group"),
    ("data: {file: d.csv, x: t, y: v}", "t,v\n1,2,3\n", "row 2 has 3 cells"),
]


@pytest.mark.parametrize(("text", "csv_text", "needle"), BAD_DATA)
def test_bad_data_files_exit_2_with_one_line_nothing_written(tmp_path, text, csv_text, needle):
    if csv_text is not None:
        (tmp_path / "d.csv").write_text(csv_text)
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + "\n")
    out = tmp_path / "out"
    p = run_jaxfit("--config", str(cfg), "--output", str(out))
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and needle in line and "Traceback" not in line, line
    assert "data" in line and not out.exists()


def test_sizes_over_the_limit_are_refused_before_anything_runs(tmp_path, monkeypatch):
    from jaxfit.plan import datafile

    (tmp_path / "d.csv").write_text("t,v,g\n" + "".join(f"{i},{i},a\n" for i in range(20)))
    monkeypatch.setattr(datafile, "MAX_GROUP_POINTS", 10)
    with pytest.raises(jaxfit.ConfigError, match="group 'a' has 20 points; at most 10"):
        jaxfit.load_config({"data": {"file": str(tmp_path / "d.csv"), "x": "t", "y": "v", "group": "g"}})
    monkeypatch.setattr(datafile, "MAX_ROWS", 5)
    with pytest.raises(jaxfit.ConfigError, match="more than 5 rows"):
        jaxfit.load_config({"data": {"file": str(tmp_path / "d.csv"), "x": "t", "y": "v"}})


def test_export_of_a_grouped_config_is_one_error_line(tmp_path):
    p = run_jaxfit("export", "--config", "configs/dose_response.yaml", "-o", str(tmp_path / "x.jaxexport"))
    assert p.returncode == 2 and "configs/dose_response.yaml: data.group" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "x.jaxexport").exists()


def test_nan_policy_omit_leaves_missing_points_out_of_their_fit(tmp_path):
    rng = np.random.default_rng(3)
    model = tmp_path / "decay.py"
    model.write_text(
        "import jax.numpy as jnp\ndef predict(x, a=1.0, k=0.5, c=0.0):\n    return a * jnp.exp(-k * x) + c\n"
    )
    rows, clean = ["id,x,y"], ["id,x,y"]
    for g in range(3):
        x = np.linspace(0, 5, 12)
        y = 2 * np.exp(-0.6 * x) + 0.3 + 0.01 * rng.standard_normal(12)
        for i, (u, v) in enumerate(zip(x, y)):
            hole = (g == 1 and i in (2, 7)) or (g == 2 and i > 1)
            rows.append(f"g{g},{u:.17g}," + ("" if hole else f"{v:.17g}"))
            if not hole:
                clean.append(f"g{g},{u:.17g},{v:.17g}")
    (tmp_path / "holes.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "clean.csv").write_text("\n".join(clean) + "\n")
    base = {
        "model": {"function": f"{model}:predict"},
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-6},
    }
    holes = {"file": str(tmp_path / "holes.csv"), "group": "id"}
    with pytest.raises(jaxfit.ConfigError, match="nan_policy: omit"):
        jaxfit.load_config({**base, "data": holes})
    got = jaxfit.fit_batch({**base, "data": {**holes, "nan_policy": "omit"}})
    want = jaxfit.fit_batch({**base, "data": {"file": str(tmp_path / "clean.csv"), "group": "id"}})
    assert got.status[2] == jaxfit.Status.TOO_FEW_POINTS and want.status[2] == jaxfit.Status.TOO_FEW_POINTS
    for name in "akc":
        np.testing.assert_allclose(got.params[name][:2], want.params[name][:2], rtol=1e-5)
    assert list(got.dof[:2]) == [9, 7]


def _decay_groups(tmp_path, groups=4):
    rng = np.random.default_rng(8)
    rows = ["id,x,y"]
    truth = []
    for g in range(groups):
        n = 8 + 3 * g  # ragged: padded to a shared length
        a, c = rng.uniform(1, 4), rng.uniform(-1, 1)
        x = np.linspace(0, 5, n)
        y = a * np.exp(-0.7 * x) + c + 0.01 * rng.standard_normal(n)
        rows += [f"g{g},{u:.17g},{v:.17g}" for u, v in zip(x, y)]
        truth.append((x, y))
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "decay.py").write_text(
        "import jax.numpy as jnp\n"
        "def predict(x, a=1.0, k=0.5, c=0.0):\n    return a * jnp.exp(-k * x) + c\n"
        "def guess(x, y):\n    return {'a': jnp.max(y) - jnp.min(y), 'c': jnp.min(y)}\n"
        "def wrong(x, y):\n    return {'gain': jnp.max(y)}\n"
        "def not_a_dict(x, y):\n    return jnp.max(y)\n"
    )
    return truth


def test_model_guess_starts_each_data_set_from_its_own_data(tmp_path):
    truth = _decay_groups(tmp_path)
    config = {
        "model": {"function": f"{tmp_path / 'decay.py'}:predict", "guess": f"{tmp_path / 'decay.py'}:guess"},
        "data": {"file": str(tmp_path / "d.csv"), "group": "id"},
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-6},
    }
    r = jaxfit.fit_batch(config)
    for g, (_, y) in enumerate(truth):
        assert r.init["a"][g] == pytest.approx(y.max() - y.min(), rel=1e-6)
        assert r.init["c"][g] == pytest.approx(y.min(), rel=1e-5, abs=1e-6)
        assert r.init["k"][g] == 0.5  # not guessed: the params value
    assert r.status_counts()["converged"] == len(truth)


def test_a_float64_run_guesses_in_float64(tmp_path):
    truth = _decay_groups(tmp_path)
    config = {
        "model": {"function": f"{tmp_path / 'decay.py'}:predict", "guess": f"{tmp_path / 'decay.py'}:guess"},
        "data": {"file": str(tmp_path / "d.csv"), "group": "id"},
        "train": {"trainable": "all", "optimizer": "lm"},
        "precision": "float64",
    }
    starts = jaxfit.load_config(config)._starts
    for g, (_, y) in enumerate(truth):  # every digit of the float64 arithmetic, not float32's 7
        assert starts["a"][g] == y.max() - y.min() and starts["c"][g] == y.min()


@pytest.mark.parametrize(
    ("name", "message"),
    [("wrong", "'gain', which is not a trained parameter"), ("not_a_dict", "must return a dict")],
)
def test_a_bad_guess_is_one_error_line(tmp_path, name, message):
    _decay_groups(tmp_path)
    (tmp_path / "c.yaml").write_text(
        f"model: {{function: 'decay:predict', guess: 'decay:{name}'}}\n"
        "data: {file: d.csv, group: id}\ntrain: {trainable: all}\n"
    )
    p = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache")
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
