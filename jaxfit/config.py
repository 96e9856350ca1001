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
from typing import Annotated, Any, Literal, NamedTuple, NoReturn, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from jaxfit.core.example import OPTIMIZERS, SEED_PARAMS, SEED_X, SEED_Y
from jaxfit.errors import ConfigError

MAX_STEPS_LIMIT = 10**9
"""Largest accepted ``train.max_steps``."""
MAX_INLINE = 1_000_000
"""Most inline data points (``data.x``/``data.y`` lists)."""
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
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Bound = Annotated[float, Field(allow_inf_nan=False)] | None
"""A parameter's name; which names exist depends on the model (checked in ``validate``)."""
MAX_HIDDEN = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The model: the network family (``hidden`` nodes of ``activation``; the seed's by
    default) or a pure JAX ``function`` from an import path (``"module:function"``)."""

    hidden: Annotated[StrictInt, Field(ge=1, le=MAX_HIDDEN)] = 2
    activation: Literal["softplus", "relu", "tanh", "sigmoid"] = "softplus"
    function: str | None = None
    """``predict(x, p1, p2, ...)`` for one scalar x: a config that names one is code."""
    guess: str | None = None
    """``guess(x, y) -> {name: value}``: each data set's starting values from its data
    (lmfit's ``Model.guess``), run on the device for every data set (code, as ``function``)."""

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        given = sorted({"hidden", "activation"} & self.model_fields_set)  # given, even at the default
        if self.function is not None and given:
            raise ValueError(
                f"function: a function model takes no {' or '.join(given)} (those are the network's)"
            )
        return self

    @model_serializer(mode="wrap")
    def serialize_own_fields(self, dump: Any) -> dict[str, Any]:
        # a function model's dump names no network fields (so that it validates again)
        out = dump(self)
        return {k: out[k] for k in ("function", "guess") if out[k] is not None} if self.function else out


def _x_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "column"
    if not isinstance(value, list):
        return None
    if value and all(isinstance(v, str) for v in value):
        return "columns"
    return "rows" if value and isinstance(value[0], list) else "values"


XSpec = Annotated[
    Union[
        Annotated[list[StrictFloat], Tag("values")],
        Annotated[list[Annotated[list[StrictFloat], Field(min_length=1, max_length=64)]], Tag("rows")],
        Annotated[str, Tag("column")],
        Annotated[list[str], Field(min_length=1, max_length=64), Tag("columns")],
    ],
    Discriminator(
        _x_kind,
        custom_error_type="x_spec",
        custom_error_message="expected a list of numbers, a list of rows of numbers, or column names",
    ),
]


def _sigma_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return "number"
    return {list: "list", str: "column"}.get(type(value))


SigmaSpec = Annotated[
    Union[
        Annotated[PositiveFloat, Tag("number")],
        Annotated[list[PositiveFloat], Tag("list")],
        Annotated[str, Tag("column")],
    ],
    Discriminator(
        _sigma_kind,
        custom_error_type="sigma_spec",
        custom_error_message="expected a number > 0, a list of numbers > 0 as long as y, or a column name",
    ),
]

YSpec = Annotated[
    Union[Annotated[list[StrictFloat], Tag("values")], Annotated[str, Tag("column")]],
    Discriminator(
        lambda v: "column" if isinstance(v, str) else "values" if isinstance(v, list) else None,
        custom_error_type="y_spec",
        custom_error_message="expected a list of numbers, or a column name",
    ),
]


class DataConfig(_Strict):
    """Observations: inline ``x`` and ``y`` lists (same length, finite), or columns of a
    CSV ``file`` (``x``, ``y`` name them; ``group`` splits the rows into data sets)."""

    file: str | None = None
    """A CSV file with a header row (a path relative to the config file)."""
    group: str | None = None
    """With ``file``: the column whose labels split the rows into data sets (one fit each)."""
    nan_policy: Literal["raise", "omit"] = "raise"
    """``omit``: an empty cell or a non-finite number (in a data file, or ``.nan`` inline)
    marks a missing point (left out of its fit); ``raise`` refuses it."""
    x: XSpec = Field(
        default_factory=lambda: list(SEED_X),
        json_schema_extra={"default": list(SEED_X)},
    )
    """One number per point, or with several coordinates per point a row of ``d``
    numbers each (``[[px, py], ...]``); with ``file``, a column name or ``d`` of them."""
    y: YSpec = Field(
        default_factory=lambda: list(SEED_Y),
        json_schema_extra={"default": list(SEED_Y)},
    )
    sigma: SigmaSpec | None = None
    """Each point's standard deviation (residuals are divided by it): one number for
    every point, an inline list as long as ``y``, or (with ``file``) a column name."""
    _table: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _columns_by_default(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping) and raw.get("file") is not None:
            lists = [k for k in ("x", "y") if isinstance(raw.get(k), list) and _x_kind(raw[k]) != "columns"]
            if lists:
                raise ValueError(f"file: give either a file or inline {' and '.join(lists)} lists, not both")
            return {"x": "x", "y": "y", **raw}
        return raw

    @field_validator("x", "y")
    @classmethod
    def _length(cls, values: Any, info: ValidationInfo) -> Any:
        kind = _x_kind(values)
        if kind in ("column", "columns") and info.data.get("file") is None:
            raise ValueError("names a column, but data has no file: give a list of numbers")
        if kind == "columns" and info.field_name == "y":
            raise ValueError("y is one column")
        if kind == "rows" and len({len(r) for r in values}) != 1:
            raise ValueError("every row of x must have the same number of coordinates")
        if isinstance(values, list) and not 1 <= len(values) <= MAX_INLINE:
            raise ValueError(f"must have 1 to {MAX_INLINE:,} values (got {len(values):,})")
        if kind in ("values", "rows") and info.data.get("nan_policy") != "omit":
            rows = [v if isinstance(v, list) else [v] for v in values]
            bad = next((i for i, r in enumerate(rows) if not all(map(math.isfinite, r))), None)
            if bad is not None:
                raise ValueError(
                    f"point {bad} is not a finite number ({values[bad]}); "
                    "give numbers, or nan_policy: omit to leave such points out"
                )
        return values

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, value: Any, info: ValidationInfo) -> Any:
        file, y = info.data.get("file"), info.data.get("y")
        if isinstance(value, str) and file is None:
            raise ValueError("names a column, but data has no file: give a number or a list as long as y")
        if isinstance(value, list) and file is not None:
            raise ValueError("with a file, give a column name or one number, not a list")
        if isinstance(value, list) and isinstance(y, list) and len(value) != len(y):
            raise ValueError(f"must have as many values as y ({len(y)}), got {len(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.file is None:
            if self.group is not None:
                raise ValueError("group: needs a file (the column of group labels)")
            if len(self.x) != len(self.y):
                raise ValueError(f"x and y must have the same length (got {len(self.x)} and {len(self.y)})")
        return self  # a file is read by the loader (``load_config``), not by a validator

    def read(self) -> Any:
        """Read the data file once (``ValueError`` naming what is wrong); ``load_config``
        calls it right after validation, so a loaded config holds its table."""
        if self.file is not None and self._table is None:
            from jaxfit.datafile import read_table

            column = self.sigma if isinstance(self.sigma, str) else None
            self._table = read_table(
                Path(self.file), self.x, self.y, self.group, column, self.nan_policy == "omit"
            )
        return self._table

    def _inline_finite(self) -> list[bool]:
        """Which inline points have a finite ``x`` (every coordinate) and ``y``."""
        rows = [v if isinstance(v, list) else [v] for v in self.x]
        return [all(map(math.isfinite, r)) and math.isfinite(y) for r, y in zip(rows, self.y)]

    def mask_of(self) -> Any:
        """Which points of an ungrouped data set are real (None: all of them)."""
        if self.file is None:
            finite = self._inline_finite()
            return None if all(finite) else finite
        return self.read().finite

    def sigma_of(self, n: int) -> Any:
        """Each point's sigma for an ungrouped data set of ``n`` points (None: unweighted)."""
        if self.sigma is None:
            return None
        if isinstance(self.sigma, str):
            return self.read().sigma
        return [float(self.sigma)] * n if isinstance(self.sigma, float) else self.sigma

    @property
    def grouped(self) -> bool:
        return self.group is not None

    @property
    def dims(self) -> int:
        """Coordinates per point: 0 for one scalar x, else ``d`` (several x columns)."""
        kind = _x_kind(self.x)
        if kind == "columns":
            return len(self.x)
        return len(self.x[0]) if kind == "rows" else 0

    @property
    def groups(self) -> int:
        """Number of data sets (1 without a group column)."""
        return len(self.read().labels) if self.grouped else 1

    def arrays(self) -> tuple[Any, Any]:
        """``(x, y)`` of an ungrouped data set (lists, or float64 arrays from a file)."""
        if self.file is None:
            return self.x, self.y
        return self.read().x, self.read().y

    @property
    def table(self) -> Any:
        """The file's ``datafile.Table`` (None for inline data)."""
        return self.read()


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


class LM(_Strict):
    """Levenberg–Marquardt for the SSR (what scipy's curve_fit runs): damped
    Gauss–Newton steps, each kept only if the SSR does not grow. No learning rate."""

    name: Literal["lm"] = "lm"
    damping: PositiveFloat = 0.01
    """The starting damping λ."""


Optimizer = Annotated[Union[SGD, Momentum, Adam, LM], Field(discriminator="name")]


class TrainConfig(_Strict):
    """What to train and how; the seed trains ``b3`` with sgd at 0.1 to |step| < 0.001."""

    trainable: list[ParamName] = Field(
        default_factory=lambda: ["b3"], json_schema_extra={"default": ["b3"]}, min_length=1
    )
    """Names of the model's parameters to train, or ``all`` (default: the network's
    output bias, every parameter of a function model)."""
    optimizer: Optimizer = Field(default_factory=SGD)
    learning_rate: PositiveFloat = 0.1
    tolerance: PositiveFloat = 0.001
    max_steps: Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_LIMIT)] = 1000
    ftol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: also converged when an accepted step changes the SSR by less than
    ``max(ftol, ftol·SSR)`` (Gpufit's rule, MINPACK's ftol); 0 (default): off."""
    xtol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: also converged when an accepted step has ``‖δ‖ < xtol·(xtol + ‖p‖)``
    (scipy's and MINPACK's xtol); 0 (default): off."""
    gtol: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.0
    """``lm`` only: converged where every column of the Jacobian is within ``gtol`` of
    orthogonal to the residuals (MINPACK's gtol); 0 (default): off."""
    absolute_sigma: StrictBool = False
    """``data.sigma`` are absolute standard deviations: the covariance is ``(JᵀJ)⁻¹``,
    not scaled by the reduced χ² (scipy's ``absolute_sigma``)."""
    loss: Literal["ssr", "poisson", "soft_l1", "huber", "cauchy", "arctan"] = "ssr"
    """What the fit minimises (``core.losses``): the SSR; the Poisson deviance (counts,
    maximum likelihood); or scipy's robust losses (with ``f_scale``)."""
    f_scale: PositiveFloat = 1.0
    """The robust losses' soft margin between inliers and outliers."""

    @field_validator("optimizer", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("trainable")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"names must not repeat (got {value})")
        return value


class StartsConfig(_Strict):
    """A table of starting values, one row per data set: a ``group`` column of the data's
    labels, and a column per trainable parameter it sets (the others keep ``params``)."""

    file: str
    group: str = "group"


class ReportConfig(_Strict):
    """What a fit reports beyond its parameters (standard errors and statistics always)."""

    confidence: Annotated[StrictFloat, Field(gt=0, lt=1)] = 0.95
    """Level of the parameters' confidence intervals and of the curve's bands."""
    covariance: StrictBool = False
    """Keep each fit's full covariance matrix in a batch (k² numbers per fit; a single
    fit always has it)."""
    statistics: StrictBool = True
    """Compute a batch's standard errors and statistics (false: skip the pass, for
    sweeps whose error bars nobody reads: W1's million seed fits run in half the time)."""


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
        """Grid axes as ``(name, size)`` (parameters as given, then hyperparameters)."""
        axes = []
        for name, spec in self.init.items():
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

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    params: dict[ParamName, FiniteFloat] = Field(
        default_factory=lambda: dict(SEED_PARAMS), json_schema_extra={"default": SEED_PARAMS}
    )
    """Starting values by name (the model's defaults for names left out)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    precision: Literal["float32", "float64"] = "float32"
    report: ReportConfig = Field(default_factory=ReportConfig)
    starts: StartsConfig | None = None
    bounds: dict[ParamName, tuple[Bound, Bound]] = Field(default_factory=dict)
    """``{name: [lower, upper]}`` for trained parameters (null: unbounded on that side);
    each step is projected into the box."""
    """Each data set's own starting values (grouped data); ``batch`` draws and grids of
    the same parameters are replaced by them."""
    batch: BatchConfig | None = None
    """Absent: a single fit with a step-by-step trace. Present: many fits."""
    devices: Annotated[StrictInt, Field(ge=1)] | None = None
    """Use at most this many local devices for a batch (default: all)."""
    block_size: Annotated[StrictInt, Field(ge=1, le=2**24)] | None = None
    """Fits per vmapped block, or lanes of a streamed batch (default: by platform and
    problem; on CPU 16384 for one trainable parameter, else 128)."""
    _model: Any = PrivateAttr(default=None)
    _starts: Any = PrivateAttr(default=None)
    _start_bounds: Any = PrivateAttr(default=None)

    @property
    def start_values(self) -> dict[str, Any] | None:
        """``starts``' values by parameter, float64 ``(groups,)`` in data-set order (None without)."""
        return self._starts

    def bounds_by_set(self) -> dict[str, tuple[Any, Any]]:
        """Each bounded parameter's ``(lower, upper)``: float64 ``(groups,)`` arrays where
        the starts table has ``P.lower``/``P.upper`` columns (which replace ``bounds``
        on their side), else floats (±inf: none). Empty without bounds."""
        inf = math.inf
        out: dict[str, tuple[Any, Any]] = {
            n: (-inf if lo is None else lo, inf if hi is None else hi) for n, (lo, hi) in self.bounds.items()
        }
        for column, values in (self._start_bounds or {}).items():
            name, side = column.rsplit(".", 1)
            lo, hi = out.get(name, (-inf, inf))
            out[name] = (values, hi) if side == "lower" else (lo, values)
        return out

    @property
    def core_model(self) -> Any:
        """The model as the engine takes it (``core.model.Network`` or ``Function``)."""
        if self._model is None:
            from jaxfit.core.model import SEED_MODEL, Network

            m = self.model
            self._model = SEED_MODEL if m == ModelConfig() else Network(m.hidden, m.activation)
        return self._model

    @property
    def names(self) -> tuple[str, ...]:
        """The model's parameter names, in order."""
        return tuple(self.params)

    @property
    def is_batch(self) -> bool:
        """Many fits: a ``batch`` section, or data split into groups."""
        return self.batch is not None or self.data.grouped

    @property
    def per_group(self) -> int:
        """Fits per data set: the batch's fits (1 without a batch)."""
        return self.batch.fits if self.batch else 1

    @property
    def fits(self) -> int:
        """Fits in the run: data sets times the fits per data set."""
        return self.data.groups * self.per_group


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
        **_INIT_KINDS,
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


def _messages(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[tuple[list[str | int], str]]:
    out = []
    for err in exc.errors():
        path, message = _describe({**err, "loc": (*prefix, *err["loc"])})
        out.append((path, message))
    return out


def _raise(source: str, text: str | None, errors: Sequence[tuple[Sequence[str | int], str]]) -> NoReturn:
    parts = []
    for path, message in errors:
        dotted = ".".join(str(p) for p in path) or "(top level)"
        line = _yaml_line(text, path) if text is not None else None
        where = f" (line {line})" if line else ""
        parts.append(f"{dotted}{where}: {message}")
    raise ConfigError(f"{source}: " + "; ".join(parts))


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
        _raise(source, text, _messages(exc, ["model"]))
    if model.function is None:
        return _Names(network_names(model.hidden), network_defaults(model.hidden))
    from jaxfit import functions

    try:
        resolved = functions.resolve(model.function, base_dir)
        fn, names, defaults = functions.load(resolved)
    except ValueError as err:
        _raise(source, text, [(["model", "function"], str(err))])
    raw["model"] = {**section, "function": resolved}
    if model.guess is not None:
        try:
            raw["model"]["guess"] = functions.resolve(model.guess, base_dir)
        except ValueError as err:
            _raise(source, text, [(["model", "guess"], str(err))])
    return _Names(names, defaults, (fn, model.function))


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
    names, defaults, function = _model_names(raw, base_dir, source, text)
    errors = _with_names(raw, names, defaults, function is not None)
    if errors:
        _raise(source, text, errors)
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
        _raise(source, text, _messages(exc))
    try:
        config.data.read()
    except ValueError as err:
        _raise(source, text, [(["data"], str(err))])
    if function is not None:
        from jaxfit import functions
        from jaxfit.core.model import Function

        fn, label = function
        dims = config.data.dims
        try:
            functions.check_traceable(fn, names, label, dims)
        except ValueError as err:
            _raise(source, text, [(["model", "function"], str(err))])
        config._model = Function(fn, names, label, dims)
    elif config.data.dims:
        _raise(
            source, text, [(["data", "x"], "the network family takes one x per point; give a function model")]
        )
    if config.starts is not None:
        _check_starts(config, source, text)
    if config.model.guess is not None:
        _guess_starts(config, source, text)
    errors = _bounds_errors(config) + _loss_errors(config)
    if errors:
        _raise(source, text, errors[:1])
    return config


def _bounds_errors(config: Config) -> list:
    """What is wrong with ``bounds``: an unknown or frozen parameter, lower ≥ upper, a
    start (``params``, the batch's starting values, the starts table) outside."""
    import numpy as np

    errors: list[tuple[list[str | int], str]] = []
    for name, (low, high) in config.bounds_by_set().items():
        where = ["bounds", name] if name in config.bounds else ["starts", "file"]
        lo, hi = (None if np.ndim(b) == 0 and np.isinf(b) else b for b in (low, high))
        if np.ndim(low) or np.ndim(high):  # per data set: name the first one that is wrong
            errors += _bounds_by_set_errors(config, name, np.broadcast_arrays(low, high))
            continue
        if name not in config.names:
            return [(where, f"unknown parameter {name!r} (the model's: {', '.join(config.names)})")]
        if name not in config.train.trainable:
            return [(where, f"{name!r} is not trained (train.trainable): a frozen parameter has no bounds")]
        if not low < high:
            return [(where, f"lower {lo} must be below upper {hi}")]
        starts = {"params": [config.params[name]]}
        init = (config.batch.init if config.batch else {}).get(name)
        if isinstance(init, Linspace):
            starts["batch.init"] = list(init.linspace[:2])
        elif isinstance(init, Values):
            starts["batch.init"] = init.values
        elif isinstance(init, Uniform):
            starts["batch.init"] = [init.uniform.low, init.uniform.high]
        elif isinstance(init, Normal):
            return [(["batch", "init", name], "a normal draw can fall outside the bounds: use uniform")]
        given = config.start_values
        if given is not None and name in given:
            starts["the starts of the data sets"] = [float(v) for v in given[name]]
        if init is not None:
            starts.pop("params")
        for what, values in starts.items():
            bad = [v for v in values if not low <= v <= high]
            if bad:
                return [(where, f"{what}: start {bad[0]:g} is outside [{lo}, {hi}]")]
    return errors


def _bounds_by_set_errors(config: Config, name: str, bounds: list) -> list:
    """``_bounds_errors`` for a parameter with bounds per data set (starts table columns)."""
    import numpy as np

    where, (low, high) = ["starts", "file"], bounds
    labels = config.data.table.labels
    if name not in config.train.trainable:
        return [(where, f"{name}.lower/upper: {name!r} is not trained (train.trainable)")]
    start = (config.start_values or {}).get(name, np.full(len(labels), config.params[name]))
    for g in range(len(labels)):
        if not low[g] < high[g]:
            return [
                (where, f"data set {labels[g]!r}: {name}: lower {low[g]:g} must be below upper {high[g]:g}")
            ]
        if not low[g] <= start[g] <= high[g]:
            return [
                (
                    where,
                    f"data set {labels[g]!r}: {name}: start {start[g]:g} is outside [{low[g]:g}, {high[g]:g}]",
                )
            ]
    return []


def _loss_errors(config: Config) -> list:
    """``train.loss: poisson`` needs counts (y ≥ 0) and no sigma."""
    if config.train.loss != "poisson":
        return []
    if config.data.sigma is not None:
        return [(["data", "sigma"], "a Poisson fit weighs each count by the model itself; give no sigma")]
    import numpy as np

    y = config.data.table.y if config.data.file is not None else np.asarray(config.data.y, float)
    if (np.asarray(y)[np.isfinite(y)] < 0).any():
        return [(["data", "y"], "counts must be >= 0 for train.loss: poisson")]
    return []


def _guess_starts(config: Config, source: str, text: str | None) -> None:
    """Run ``model.guess`` on every data set (one error line if it fails)."""
    from jaxfit import functions
    from jaxfit.datafile import padded_groups

    where = [(["model", "guess"])]
    if not config.data.grouped or config.starts is not None:
        why = (
            "needs grouped data (data.group)" if not config.data.grouped else "give starts or guess, not both"
        )
        _raise(source, text, [(where[0], why)])
    try:
        guess = functions.load_callable(config.model.guess)
        x, y, mask, _ = padded_groups(config.data.table)
        config._starts = functions.guess_starts(
            guess, x, y, mask, tuple(config.train.trainable), config.model.guess, config.precision
        )
    except ValueError as err:
        _raise(source, text, [(where[0], str(err))])


def _check_starts(config: Config, source: str, text: str | None) -> None:
    """Read the starts table into ``config`` (one error line for whatever is wrong)."""
    import csv

    import numpy as np

    where = ["starts", "file"]
    path = Path(config.starts.file)
    if not config.data.grouped:
        _raise(source, text, [(["starts"], "needs grouped data (data.group): a start per data set")])
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        _raise(source, text, [(where, f"{path}: cannot read: {getattr(err, 'strerror', None) or err}")])
    if not rows:
        _raise(source, text, [(where, f"{path}: the file is empty")])
    header = [h.strip() for h in rows[0]]
    group = config.starts.group
    if group not in header:
        _raise(source, text, [(where, f"{path}: no column {group!r} (the header has {', '.join(header)})")])
    names = [h for h in header if h != group]
    for name in names:
        name = name.removesuffix(".lower").removesuffix(".upper")  # a bound of the data set's fit
        if name not in config.names:
            _raise(source, text, [(where, f"{path}: column {name!r} is not a parameter of the model")])
        if name not in config.train.trainable:
            _raise(source, text, [(where, f"{path}: column {name!r} is not trained (train.trainable)")])
    table: dict[str, list[float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        cells = dict(zip(header, (c.strip() for c in row)))
        try:  # an empty bound cell: no bound on that side
            values = [_bound_cell(n) if _is_bound(n) and cells[n] == "" else float(cells[n]) for n in names]
        except (KeyError, ValueError):
            _raise(source, text, [(where, f"{path}: row {line}: every start must be a number")])
        if not all(math.isfinite(v) or _is_bound(n) for n, v in zip(names, values)):
            _raise(source, text, [(where, f"{path}: row {line}: a start is not finite")])
        table[cells.get(group, "")] = values
    labels = config.data.table.labels
    missing = [g for g in labels if g not in table]
    if missing:
        _raise(
            source,
            text,
            [(where, f"{path}: no start for data set {missing[0]!r} ({len(missing):,} missing)")],
        )
    columns = np.array([table[g] for g in labels], np.float64).reshape(len(labels), len(names))
    config._starts = {n: columns[:, i] for i, n in enumerate(names) if not _is_bound(n)}
    config._start_bounds = {n: columns[:, i] for i, n in enumerate(names) if _is_bound(n)}


def _is_bound(column: str) -> bool:
    """A starts-table column ``P.lower`` or ``P.upper``: a bound per data set."""
    return column.endswith((".lower", ".upper"))


def _bound_cell(column: str) -> float:
    return -math.inf if column.endswith(".lower") else math.inf


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


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file."""
    return Config.model_json_schema()
