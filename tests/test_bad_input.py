"""Every user error: exit 2, one line naming the file and the field, no traceback,
nothing written."""

import pytest
from conftest import run_jaxfit

import jaxfit

# (file content, expected words in the message)
BAD_YAML = [
    ("train: {learning_rate: -0.1}", "train.learning_rate"),
    ("train: {learning_rate: 0}", "train.learning_rate"),
    ("train: {learning_rate: .nan}", "train.learning_rate"),
    ("train: {learning_rate: .inf}", "train.learning_rate"),
    ("train: {learning_rate: fast}", "train.learning_rate"),
    ("train: {learning_rate: true}", "train.learning_rate"),
    ("train: {tolerance: -1}", "train.tolerance"),
    ("train: {tolerance: 0}", "train.tolerance"),
    ("train: {max_steps: 0}", "train.max_steps"),
    ("train: {max_steps: 1.5}", "train.max_steps"),
    ("train: {max_steps: 100000000000}", "train.max_steps"),
    ("train: {trainable: []}", "train.trainable"),
    ("train: {trainable: [b9]}", "train.trainable"),
    ("train: {trainable: [b3, b3]}", "train.trainable"),
    ("train: {trainable: b3}", "train.trainable"),
    ("train: {optimizer: rmsprop}", "train.optimizer"),
    ("train: {optimizer: {name: adam, b1: 1.5}}", "train.optimizer.b1"),
    ("train: {optimizer: {name: sgd, momentum: 0.9}}", "train.optimizer.momentum"),
    ("train: {learnin_rate: 0.1}", "train.learnin_rate"),
    ("trian: {}", "trian"),
    ("params: {w5: 1.0}", "params.w5"),
    ("params: {w1: abc}", "params.w1"),
    ("data: {x: [0, 1], y: [0]}", "data"),
    ("data: {x: [], y: []}", "data.x"),
    ("data: {x: [0, .nan, 1], y: [0, 1, 0]}", "data.x"),
    ("data: {x: [0, 1, 2], y: [0, .inf, 0]}", "data.y"),
    ("precision: float16", "precision"),
    ("batch: {init: {b3: {linspace: [0, 1, 0]}}}", "batch.init.b3.linspace"),
    ("batch: {init: {b3: {normal: {std: -1}}}}", "batch.init.b3.normal.std"),
    ("batch: {init: {b3: {uniform: {low: 1, high: 0}}}}", "batch.init.b3.uniform"),
    ("batch: {init: {b3: {gauss: {}}}}", "batch.init.b3"),
    ("batch: {init: {b9: {values: [1]}}}", "batch.init.b9"),
    ("batch: {init: {b3: {linspace: [0, 1, 100000]}}, count: 100000}", "batch"),
    ("batch: {learning_rate: [0.1, -0.1]}", "batch.learning_rate"),
    ("- 1\n- 2\n", "mapping"),
    ("train: [1, 2", "invalid YAML"),
    ("!!python/object/apply:os.system ['echo pwned']", "invalid YAML"),
    ("a: !!python/name:os.system", "invalid YAML"),
    (
        "train: {learning_rate: 0.1}\nprecision: float32\ntrain: {trainable: [b3]}\n",
        "duplicate key 'train' (lines 1 and 3)",
    ),
    ("params:\n  b3: 1.0\n  b3: 2.0\n", "duplicate key 'b3' (lines 2 and 3)"),
]


@pytest.mark.parametrize(("text", "field"), BAD_YAML)
def test_api_raises_config_error(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(jaxfit.ConfigError) as err:
        jaxfit.load_config(path)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert message.startswith(str(path)) and field in message and "\n" not in message


def test_yaml_line_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("# comment\ntrain:\n  trainable: [b3]\n  learning_rate: -1\n")
    with pytest.raises(jaxfit.ConfigError, match=r"train\.learning_rate \(line 4\).*got -1"):
        jaxfit.load_config(path)


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "bad.yaml"
    path.write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(jaxfit.ConfigError):
        jaxfit.load_config(path)
    assert not marker.exists()


def test_dict_api_errors():
    with pytest.raises(jaxfit.ConfigError, match=r"<dict>: train\.tolerance"):
        jaxfit.fit({"train": {"tolerance": -1}})


CLI_CASES = [
    (["--config", "{bad}"], "train.learning_rate"),
    (["--config", "missing.yaml"], "no such file"),
    (["--config", "{dir}"], "directory"),
    (["--set", "train.learning_rate=-3"], "train.learning_rate"),
    (["--set", "train.max_steps=many"], "train.max_steps"),
    (["--set", "nonsense"], "KEY.PATH=VALUE"),
    (["--set", "train.trainable.x=1"], "train.trainable"),
    (["--config", "{bad}", "--format", "xml"], "--format"),
    (["--config", "{binary}"], "cannot read"),
    (["--set", "train.learning_rate=[1,"], "invalid YAML"),
    (["--config", "configs/b3_sweep.yaml", "--set", "block_size=16000000"], "block_size"),
    (["--config", "configs/b3_sweep.yaml", "--set", "batch.init.b3.linspace=[0, 1, 2000000000]"], "batch"),
    (["--config", "configs/b3_sweep.yaml", "--devices", "99"], "devices"),
    (["--config", "configs/b3_sweep.yaml", "--devices", "0"], "--devices"),
    (["--resume"], "--resume"),
]


@pytest.mark.parametrize(("args", "needle"), CLI_CASES)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, args, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: -0.1\n")
    out = tmp_path / "out"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    args = [a.format(bad=bad, dir=tmp_path, binary=binary) for a in args]
    p = run_jaxfit(*args, "--output", str(out), timeout=120)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""
    assert not out.exists() or not any(out.iterdir())


def test_strict_exit_code(tmp_path):
    def code(*args):
        return run_jaxfit(*args, "--format", "json", timeout=120).returncode

    assert code("--set", "train.max_steps=3") == 0  # completed, whatever the status
    assert code("--set", "train.max_steps=3", "--strict") == 1
    assert code("--strict") == 0
    assert (
        code(
            "--config",
            "configs/b3_sweep.yaml",
            "--set",
            "batch.init.b3.linspace=[0, 1, 10]",
            "--set",
            "batch.learning_rate=[0.1, 1.0]",
            "--strict",
        )
        == 1
    )


@pytest.mark.parametrize(("text", "field"), BAD_YAML)
def test_cli_corpus_exit_2_field_named_nothing_written(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    p = run_jaxfit("--config", str(path), "--output", str(out), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and str(path) in lines[0] and "Traceback" not in p.stderr
    assert p.stdout == "" and not out.exists()
