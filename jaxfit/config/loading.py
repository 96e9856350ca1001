"""Loading: a YAML file, a mapping or a ``Config`` in (with ``--set`` overrides), a
validated ``Config`` out, the model's names filled in and its function imported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from jaxfit.config.checks import (
    bounds_errors,
    guess_builtin,
    interval_errors,
    loss_errors,
    read_starts,
    run_guess,
    shared_errors,
)
from jaxfit.config.messages import messages, refuse
from jaxfit.config.model import ModelConfig
from jaxfit.config.schema import Config
from jaxfit.config.yamlio import parse_yaml
from jaxfit.errors import ConfigError


def _set_path(raw: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = raw
    for i, key in enumerate(keys[:-1]):
        if node.get(key) is None:  # absent, or null (as a dumped config's batch)
            node[key] = {}
        child = node[key]
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: --set {dotted}: {'.'.join(keys[: i + 1])} is not a mapping")
        node = child
    node[keys[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. train.learning_rate=0.05")
        key, text = item.split("=", 1)
        _set_path(raw, key.strip(), parse_yaml(text, f"--set {key.strip()}"), "--set")
    return raw


class _Names(NamedTuple):
    """A model's parameter names and default starting values; ``function``: the
    imported function and its label, for a function model."""

    names: tuple[str, ...]
    defaults: dict[str, float]
    function: tuple[Any, str] | None = None


def _model_names(raw: dict[str, Any], base_dir: Path | None, source: str, text: str | None) -> _Names:
    """The model's names and defaults from the raw ``model`` section (a function model
    is imported here, and ``raw["model"]`` gets its resolved path)."""
    from jaxfit.core.names import network_defaults, network_names

    section = raw.get("model")
    try:
        model = ModelConfig.model_validate({} if section is None else section)
    except ValidationError as exc:
        refuse(source, text, messages(exc, ["model"]))
    if model.builtin is not None:
        return _builtin_names(raw, model, source, text)
    if model.function is None:
        return _Names(network_names(model.hidden), network_defaults(model.hidden))
    from jaxfit.plan import functions

    try:
        resolved = functions.resolve(model.function, base_dir)
        fn, names, defaults = functions.load(resolved)
    except ValueError as err:
        refuse(source, text, [(["model", "function"], str(err))])
    raw["model"] = {**section, "function": resolved}
    if model.guess is not None:
        try:
            raw["model"]["guess"] = functions.resolve(model.guess, base_dir)
        except ValueError as err:
            refuse(source, text, [(["model", "guess"], str(err))])
    return _Names(names, defaults, (fn, model.function))


def _builtin_names(raw: dict[str, Any], model: ModelConfig, source: str, text: str | None) -> _Names:
    """A built-in model's free parameters (what is trained), their starts, and its
    function; hints given as ``params: {name: {expr: ...}}`` move to ``model.hints``,
    the hints' bounds into ``bounds`` (the user's own bounds win)."""
    from jaxfit.models import fit_function, plan
    from jaxfit.models.library import Hint

    params = raw.get("params")
    hints = dict(model.hints)
    if isinstance(params, Mapping):
        hints.update({n: v for n, v in params.items() if isinstance(v, Mapping)})
        raw["params"] = {n: v for n, v in params.items() if not isinstance(v, Mapping)}
        raw["params"].update(
            {n: v["value"] for n, v in hints.items() if isinstance(v.get("value"), (int, float))}
        )
    try:
        built = ModelConfig.model_validate({**raw["model"], "hints": hints}).built_in()
    except (ValidationError, ValueError) as err:
        where = ["params"] if hints else ["model", "builtin"]
        lines = messages(err, ["model"]) if isinstance(err, ValidationError) else [(where, str(err))]
        refuse(source, text, lines)
    raw["model"] = {**raw["model"], "hints": hints}
    p = plan(built)
    if isinstance(raw.get("params"), Mapping):
        raw["params"] = {n: v for n, v in raw["params"].items() if n in p.free or n not in built.param_names}
    hinted = built.hints
    box = {
        n: [None if h.min == -float("inf") else h.min, None if h.max == float("inf") else h.max]
        for n in p.free
        if (h := hinted.get(n, Hint())).min > -float("inf") or h.max < float("inf")
    }
    if box and (raw.get("bounds") is None or isinstance(raw.get("bounds"), Mapping)):
        raw["bounds"] = {**box, **(raw.get("bounds") or {})}
    defaults = {**built.defaults(), **{n: h.value for n, h in hinted.items() if h.value is not None}}
    return _Names(p.free, {n: defaults[n] for n in p.free}, (fit_function(built), built.label))


def _with_names(
    raw: dict[str, Any], names: tuple[str, ...], defaults: dict[str, float], function: bool
) -> list:
    """Fill ``raw`` (a copy) with the model's defaults and check every parameter name
    it uses; returns the errors as ``(path, message)``."""
    errors: list[tuple[list[str | int], str]] = []
    known = ", ".join(names)
    given = raw.get("params")
    if given is None or isinstance(given, Mapping):
        given = dict(given or {})
        for name in given:
            if name not in names:
                errors.append((["params", name], f"unknown parameter {name!r} (the model's: {known})"))
        for name in names:
            if name not in given and name not in defaults:
                errors.append(
                    (["params", name], f"missing: the function has no default for it (give {known})")
                )
        raw["params"] = {n: given.get(n, defaults.get(n)) for n in names if n in given or n in defaults}
    train = raw.get("train")
    if train is None or isinstance(train, Mapping):
        train = dict(train or {})
        chosen = train.get("trainable", list(names) if function else [names[-1]])
        if chosen == "all":
            chosen = list(names)
        if isinstance(chosen, list) and all(isinstance(n, str) for n in chosen):
            for name in chosen:
                if name not in names:
                    errors.append(
                        (
                            ["train", "trainable"],
                            f"{name!r} is not a parameter of the model (the model's: {known})",
                        )
                    )
            if len(set(chosen)) == len(chosen):
                chosen = [n for n in names if n in chosen] + [n for n in chosen if n not in names]
        train["trainable"] = chosen
        raw["train"] = train
    batch = raw.get("batch")
    if isinstance(batch, Mapping) and isinstance(batch.get("init"), Mapping):
        for name in batch["init"]:
            if name not in names:
                errors.append((["batch", "init", name], f"unknown parameter {name!r} (the model's: {known})"))
    return errors


def validate(
    raw: Any, source: str = "<dict>", text: str | None = None, base_dir: Path | None = None
) -> Config:
    """Validate a raw mapping into a ``Config``; errors become one-line ``ConfigError``.

    ``base_dir`` is where relative paths (``data.file``, a model module) are looked up
    first: the config file's folder (default: the working directory).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys to values, got {type(raw).__name__}"
        )
    raw = dict(raw)
    given_params = set(raw.get("params") or {}) if isinstance(raw.get("params"), Mapping) else set()
    names, defaults, function = _model_names(raw, base_dir, source, text)
    errors = _with_names(raw, names, defaults, function is not None)
    if errors:
        refuse(source, text, errors)
    starts = raw.get("starts")
    if isinstance(starts, Mapping) and isinstance(starts.get("file"), str):
        path = Path(starts["file"]).expanduser()
        raw["starts"] = {**starts, "file": str((path if base_dir is None else base_dir / path).resolve())}
    data = raw.get("data")
    if isinstance(data, Mapping) and isinstance(data.get("file"), str):
        path = Path(data["file"]).expanduser()
        raw["data"] = {**data, "file": str((path if base_dir is None else base_dir / path).resolve())}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        refuse(source, text, messages(exc))
    try:
        config.data.read()
    except ValueError as err:
        refuse(source, text, [(["data"], str(err))])
    if function is not None:
        from jaxfit.core.model import Function
        from jaxfit.plan import functions

        fn, label = function
        dims = config.data.dims
        try:
            functions.check_traceable(fn, names, label, dims)
        except ValueError as err:
            refuse(source, text, [(["model", "function"], str(err))])
        config._model = Function(fn, names, label, dims)
    elif config.data.dims:
        refuse(
            source, text, [(["data", "x"], "the network family takes one x per point; give a function model")]
        )
    if config.starts is not None:
        read_starts(config, source, text)
    if config.model.guess is not None:
        run_guess(config, source, text)
    elif config.model.builtin is not None and config.starts is None:
        guess_builtin(config, given_params, source, text)
    errors = bounds_errors(config) + loss_errors(config) + interval_errors(config) + shared_errors(config)
    if errors:
        refuse(source, text, errors[:1])
    return config


def load_config(
    source: str | Path | Mapping[str, Any] | Config | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Load and validate a config.

    Args:
        source: a YAML file path, an already-parsed mapping, a ``Config``, or ``None``
            for the seed's defaults.
        overrides: ``"train.learning_rate=0.05"``-style settings applied on top.

    Raises:
        ConfigError: with one line naming the file, the field and what is allowed.

    Example:
        >>> cfg = load_config({"train": {"learning_rate": 0.05}})
        >>> cfg.train.learning_rate
        0.05
    """
    if isinstance(source, Config) and not overrides:
        return source
    if isinstance(source, Config):
        source = source.model_dump()
    text, base_dir = None, None
    if source is None:
        name, raw = "<defaults>", {}
    elif isinstance(source, Mapping):
        # overrides edit the mapping in place: a copy, never the caller's
        name, raw = "<dict>", _deep_copy(source) if overrides else source
    elif isinstance(source, (str, Path)):
        name = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise ConfigError(f"{name}: is a directory, not a config file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{name}: cannot read: {getattr(err, 'strerror', None) or err}") from None
        raw = parse_yaml(text, name)
        base_dir = Path(source).resolve().parent
    else:
        name, raw = "<config>", source
    if overrides:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{name}: the config must be a mapping of keys to values")
        raw = apply_overrides(raw, overrides)
        text = None  # line numbers would point at the file, not the overridden value
    return validate(raw, name, text, base_dir)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def dump_yaml(config: Config) -> str:
    """The resolved config (every field, defaults included) as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
