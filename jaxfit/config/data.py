"""The ``data`` section: inline points or a CSV file's columns, groups, weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    StrictFloat,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jaxfit.config.fields import MAX_INLINE, PositiveFloat, Strict
from jaxfit.core.example import SEED_X, SEED_Y


def x_kind(value: Any) -> str | None:
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
        x_kind,
        custom_error_type="x_spec",
        custom_error_message="expected a list of numbers, a list of rows of numbers, or column names",
    ),
]


def sigma_kind(value: Any) -> str | None:
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
        sigma_kind,
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


class DataConfig(Strict):
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
    _padded: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _columns_by_default(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping) and raw.get("file") is not None:
            lists = [k for k in ("x", "y") if isinstance(raw.get(k), list) and x_kind(raw[k]) != "columns"]
            if lists:
                raise ValueError(f"file: give either a file or inline {' and '.join(lists)} lists, not both")
            return {"x": "x", "y": "y", **raw}
        return raw

    @field_validator("x", "y")
    @classmethod
    def _length(cls, values: Any, info: ValidationInfo) -> Any:
        kind = x_kind(values)
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
            from jaxfit.plan.datafile import read_table

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
        kind = x_kind(self.x)
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

    def padded(self) -> tuple[Any, Any, Any, Any]:
        """Grouped data as ``datafile.padded_groups`` arrays, made once (read-only:
        every run of this config shares them)."""
        if self._padded is None:
            from jaxfit.plan.datafile import padded_groups

            arrays = padded_groups(self.read())
            for a in arrays:
                if a is not None:
                    a.flags.writeable = False
            self._padded = arrays
        return self._padded
