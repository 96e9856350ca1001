"""Configuration: YAML (or a dict) in, a validated ``Config`` out.

Every field defaults to the seed's value, so a config names only what it changes.
Validation happens here, once, at the boundary; every user error becomes a
``ConfigError`` with one line naming the file, the field, the bad value, what is
allowed and, for YAML files, the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from jaxfit.core.example import OPTIMIZERS, PARAM_NAMES, SEED_PARAMS, SEED_X, SEED_Y
from jaxfit.errors import ConfigError

MAX_STEPS_LIMIT = 10**9
"""Largest accepted ``train.max_steps``."""
MAX_FITS = 2**31 - 2**26
"""Largest batch: fit indices are int32 on the device, with room for padding."""


# -- YAML: a safe loader that also reads 1e-3 as a float (YAML 1.2), with line numbers


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, first: int, again: int):
        super().__init__(f"duplicate key {key!r} (lines {first} and {again}); give each key once")


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # YAML says keys are unique; PyYAML would keep the last silently
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise _DuplicateKey(key, seen[key], line)
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML safely (no Python object tags); errors become ``ConfigError``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _DuplicateKey as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None


def _yaml_line(text: str, path: Sequence[str | int]) -> int | None:
    """1-based line of the node at ``path`` in YAML ``text`` (nearest ancestor found)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                break
            node = match[0][1]
            line = match[0][0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


# -- the schema

FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
ParamName = Literal["w1", "b1", "w2", "b2", "w3", "w4", "b3"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Observations: dosages ``x`` and efficacies ``y`` (same length, finite)."""

    x: list[FiniteFloat] = Field(
        default_factory=lambda: list(SEED_X),
        json_schema_extra={"default": list(SEED_X)},
        min_length=1,
        max_length=1_000_000,
    )
    y: list[FiniteFloat] = Field(
        default_factory=lambda: list(SEED_Y),
        json_schema_extra={"default": list(SEED_Y)},
        min_length=1,
        max_length=1_000_000,
    )

    @model_validator(mode="after")
    def _same_length(self) -> DataConfig:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have the same length (got {len(self.x)} and {len(self.y)})")
        return self


class ParamsConfig(_Strict):
    """Starting values of the seven parameters (the seed's by default)."""

    w1: FiniteFloat = SEED_PARAMS["w1"]
    b1: FiniteFloat = SEED_PARAMS["b1"]
    w2: FiniteFloat = SEED_PARAMS["w2"]
    b2: FiniteFloat = SEED_PARAMS["b2"]
    w3: FiniteFloat = SEED_PARAMS["w3"]
    w4: FiniteFloat = SEED_PARAMS["w4"]
    b3: FiniteFloat = SEED_PARAMS["b3"]


class SGD(_Strict):
    """Plain gradient descent: ``step size = learning_rate * gradient`` (the seed's)."""

    name: Literal["sgd"] = "sgd"


class Momentum(_Strict):
    """SGD with momentum (heavy-ball, or Nesterov)."""

    name: Literal["momentum"] = "momentum"
    momentum: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.9
    nesterov: StrictBool = False


class Adam(_Strict):
    """Adam (optax.adam)."""

    name: Literal["adam"] = "adam"
    b1: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-8


Optimizer = Annotated[Union[SGD, Momentum, Adam], Field(discriminator="name")]


class TrainConfig(_Strict):
    """What to train and how; the seed trains ``b3`` with sgd at 0.1 to |step| < 0.001."""

    trainable: list[ParamName] = Field(
        default_factory=lambda: ["b3"], json_schema_extra={"default": ["b3"]}, min_length=1
    )
    optimizer: Optimizer = Field(default_factory=SGD)
    learning_rate: PositiveFloat = 0.1
    tolerance: PositiveFloat = 0.001
    max_steps: Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_LIMIT)] = 1000

    @field_validator("optimizer", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("trainable")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"names must not repeat (got {value})")
        return [name for name in PARAM_NAMES if name in value]


class Linspace(_Strict):
    """``num`` evenly spaced values from ``start`` to ``stop`` (a grid axis)."""

    linspace: tuple[FiniteFloat, FiniteFloat, Annotated[StrictInt, Field(ge=1, le=MAX_FITS)]]


class Values(_Strict):
    """Explicit values (a grid axis)."""

    values: list[FiniteFloat] = Field(min_length=1, max_length=1_000_000)


class NormalDraw(_Strict):
    mean: FiniteFloat = 0.0
    std: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)] = 1.0


class UniformDraw(_Strict):
    low: FiniteFloat = -1.0
    high: FiniteFloat = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> UniformDraw:
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        return self


class Normal(_Strict):
    """One draw per fit from N(mean, std^2), from ``batch.seed`` and the fit's index."""

    normal: NormalDraw


class Uniform(_Strict):
    """One draw per fit from U(low, high), from ``batch.seed`` and the fit's index."""

    uniform: UniformDraw


_INIT_KINDS = {"linspace": Linspace, "values": Values, "normal": Normal, "uniform": Uniform}


def _init_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(k for k, m in _INIT_KINDS.items() if isinstance(value, m))
    keys = list(value) if isinstance(value, Mapping) else []
    return keys[0] if len(keys) == 1 and keys[0] in _INIT_KINDS else None


InitSpec = Annotated[
    Union[tuple(Annotated[model, Tag(kind)] for kind, model in _INIT_KINDS.items())],  # type: ignore[misc]
    Discriminator(
        _init_kind,
        custom_error_type="init_spec",
        custom_error_message="expected exactly one of linspace: [start, stop, num], "
        "values: [...], normal: {mean, std}, uniform: {low, high}",
    ),
]
PositiveList = Annotated[list[PositiveFloat], Field(min_length=1, max_length=1_000_000)]


class BatchConfig(_Strict):
    """Many fits at once.

    Grid axes (``linspace``/``values`` inits, and ``learning_rate``/``tolerance``/
    ``max_steps`` lists) combine as a cartesian product, in the order ``w1 b1 w2 b2
    w3 w4 b3 learning_rate tolerance max_steps`` with the last varying fastest. Each
    grid point is fitted ``count`` times; random draws (``normal``/``uniform``) are
    made per fit. So the number of fits is ``product(grid sizes) * count``.
    """

    init: dict[ParamName, InitSpec] = Field(default_factory=dict)
    learning_rate: PositiveList | None = None
    tolerance: PositiveList | None = None
    max_steps: (
        Annotated[list[Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_LIMIT)]], Field(min_length=1)] | None
    ) = None
    seed: Annotated[StrictInt, Field(ge=0, lt=2**32)] = 0
    count: Annotated[StrictInt, Field(ge=1, le=MAX_FITS)] = 1

    @model_validator(mode="after")
    def _indexable(self) -> BatchConfig:
        if self.fits > MAX_FITS:
            raise ValueError(f"the batch has {self.fits:,} fits; at most {MAX_FITS:,} are allowed")
        return self

    @property
    def grid(self) -> list[tuple[str, int]]:
        """Grid axes as ``(name, size)``, slowest first."""
        axes = []
        for name in PARAM_NAMES:
            spec = self.init.get(name)
            if isinstance(spec, Linspace):
                axes.append((name, spec.linspace[2]))
            elif isinstance(spec, Values):
                axes.append((name, len(spec.values)))
        for name in ("learning_rate", "tolerance", "max_steps"):
            values = getattr(self, name)
            if values is not None:
                axes.append((name, len(values)))
        return axes

    @property
    def fits(self) -> int:
        """Number of fits in the batch."""
        return math.prod(size for _, size in self.grid) * self.count


class Config(_Strict):
    """A whole jaxfit run. Every field defaults to the seed."""

    data: DataConfig = Field(default_factory=DataConfig)
    params: ParamsConfig = Field(default_factory=ParamsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    precision: Literal["float32", "float64"] = "float32"
    batch: BatchConfig | None = None
    """Absent: a single fit with a step-by-step trace. Present: many fits."""
    devices: Annotated[StrictInt, Field(ge=1)] | None = None
    """Use at most this many local devices for a batch (default: all)."""
    block_size: Annotated[StrictInt, Field(ge=1, le=2**24)] | None = None
    """Fits per vmapped block, or lanes of a streamed batch (default: by platform and
    problem; on CPU 8192 for one trainable parameter, else 128)."""


ConfigLike = Union[Config, Mapping[str, Any], str, Path]
"""What the API takes as a config: a ``Config``, a mapping, or a YAML file's path."""


# -- loading


def _describe(err: Mapping[str, Any]) -> tuple[list[str | int], str]:
    """Field path and a readable message for one pydantic error."""
    loc = list(err["loc"])
    # drop union-branch tags: optimizer.<name>.field and init.<p>.<kind>.<kind>
    path = [
        p
        for i, p in enumerate(loc)
        if not (i > 0 and loc[i - 1] == "optimizer" and p in OPTIMIZERS)
        and not (p in _INIT_KINDS and i + 1 < len(loc) and loc[i + 1] == p)
    ]
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see `python -m jaxfit schema`"
        return path, f"unknown key {path[-1]!r} (allowed: {allowed})"
    if kind == "literal_error" and err.get("ctx", {}).get("expected"):
        return path, f"{value!r} is not allowed; expected {err['ctx']['expected']}"
    if kind == "union_tag_invalid":
        return path, f"unknown optimizer {value.get('name')!r}; expected 'sgd', 'momentum', 'adam'"
    msg = msg.removeprefix("Value error, ")
    if kind == "missing":
        return path, "missing required field"
    shown = "" if isinstance(value, dict) or len(repr(value)) > 60 else f" (got {value!r})"
    return path, f"{msg[0].lower()}{msg[1:]}{shown}"


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class at a raw pydantic ``loc`` (union tags included), if any."""
    tagged: dict[str, type[BaseModel]] = {**_INIT_KINDS, "sgd": SGD, "momentum": Momentum, "adam": Adam}
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


def _set_path(raw: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
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


def validate(raw: Any, source: str = "<dict>", text: str | None = None) -> Config:
    """Validate a raw mapping into a ``Config``; errors become one-line ``ConfigError``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys to values, got {type(raw).__name__}"
        )
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            path, message = _describe(err)
            dotted = ".".join(str(p) for p in path) or "(top level)"
            line = _yaml_line(text, path) if text is not None else None
            where = f" (line {line})" if line else ""
            parts.append(f"{dotted}{where}: {message}")
        raise ConfigError(f"{source}: " + "; ".join(parts)) from None


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
    text = None
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
    else:
        name, raw = "<config>", source
    if overrides:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{name}: the config must be a mapping of keys to values")
        raw = apply_overrides(raw, overrides)
        text = None  # line numbers would point at the file, not the overridden value
    return validate(raw, name, text)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def dump_yaml(config: Config) -> str:
    """The resolved config (every field, defaults included) as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file."""
    return Config.model_json_schema()
