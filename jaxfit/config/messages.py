"""pydantic's errors as one line each: the field's path, what is wrong, the YAML line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from jaxfit.config.batch import INIT_KINDS
from jaxfit.config.schema import Config
from jaxfit.config.train import LM, SGD, Adam, Momentum
from jaxfit.config.yamlio import yaml_line
from jaxfit.core.example import OPTIMIZERS
from jaxfit.errors import ConfigError


def _describe(err: Mapping[str, Any]) -> tuple[list[str | int], str]:
    """Field path and a readable message for one pydantic error."""
    loc = list(err["loc"])
    # drop union-branch tags: optimizer.<name>.field and init.<p>.<kind>.<kind>
    path = [
        p
        for i, p in enumerate(loc)
        if not (i > 0 and loc[i - 1] == "optimizer" and p in OPTIMIZERS)
        and not (p in INIT_KINDS and i + 1 < len(loc) and loc[i + 1] == p)
        and not (i > 0 and loc[i - 1] == "sigma" and p in ("number", "list", "column"))
        and not (i > 0 and loc[i - 1] in ("x", "y") and p in ("values", "rows", "column", "columns"))
    ]
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see `python -m jaxfit schema`"
        return path, f"unknown key {path[-1]!r} (allowed: {allowed})"
    if kind == "literal_error" and err.get("ctx", {}).get("expected"):
        return path, f"{value!r} is not allowed; expected {err['ctx']['expected']}"
    if kind == "union_tag_invalid":
        return path, f"unknown optimizer {value.get('name')!r}; expected 'sgd', 'momentum', 'adam', 'lm'"
    msg = msg.removeprefix("Value error, ")
    if kind == "missing":
        return path, "missing required field"
    shown = "" if isinstance(value, dict) or len(repr(value)) > 60 else f" (got {value!r})"
    return path, f"{msg[0].lower()}{msg[1:]}{shown}"


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class at a raw pydantic ``loc`` (union tags included), if any."""
    tagged: dict[str, type[BaseModel]] = {
        **INIT_KINDS,
        "sgd": SGD,
        "momentum": Momentum,
        "adam": Adam,
        "lm": LM,
    }
    model: Any = Config
    for key in loc:
        fields = getattr(model, "model_fields", None)
        if fields and key in fields:
            model = fields[key].annotation
            members = getattr(model, "__args__", (model,))
            model = next((m for m in members if hasattr(m, "model_fields")), model)
        elif key in tagged:
            model = tagged[key]
        elif not isinstance(key, int) and fields is None:
            continue  # a dict key such as a parameter name under batch.init
        else:
            return None
    return model if hasattr(model, "model_fields") else None


def messages(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[tuple[list[str | int], str]]:
    out = []
    for err in exc.errors():
        path, message = _describe({**err, "loc": (*prefix, *err["loc"])})
        out.append((path, message))
    return out


def refuse(source: str, text: str | None, errors: Sequence[tuple[Sequence[str | int], str]]) -> NoReturn:
    parts = []
    for path, message in errors:
        dotted = ".".join(str(p) for p in path) or "(top level)"
        line = yaml_line(text, path) if text is not None else None
        where = f" (line {line})" if line else ""
        parts.append(f"{dotted}{where}: {message}")
    raise ConfigError(f"{source}: " + "; ".join(parts))
