"""Configuration: YAML (or a dict) in, a validated ``Config`` out.

Every field defaults to the seed's value, so a config names only what it changes.
Validation happens here, once, at the boundary; every user error becomes a
``ConfigError`` with one line naming the file, the field, the bad value, what is
allowed and, for YAML files, the line.

One module per section (``model``, ``data``, ``train``, ``batch`` with ``starts`` and
``report``), the whole in ``schema``; ``loading`` turns a file or a mapping into a
``Config``, with ``checks`` for what spans sections and ``messages`` for the error
lines; ``yamlio`` reads YAML.
"""

from jaxfit.config.batch import (
    BatchConfig,
    Linspace,
    Normal,
    NormalDraw,
    ReportConfig,
    StartsConfig,
    Uniform,
    UniformDraw,
    Values,
)
from jaxfit.config.data import DataConfig
from jaxfit.config.fields import MAX_FITS, MAX_INLINE, MAX_STEPS_LIMIT
from jaxfit.config.loading import apply_overrides, dump_yaml, load_config, validate
from jaxfit.config.model import ModelConfig
from jaxfit.config.schema import Config, ConfigLike, json_schema
from jaxfit.config.train import LM, SGD, Adam, Momentum, TrainConfig
from jaxfit.config.yamlio import parse_yaml

__all__ = [
    "LM",
    "MAX_FITS",
    "MAX_INLINE",
    "MAX_STEPS_LIMIT",
    "SGD",
    "Adam",
    "BatchConfig",
    "Config",
    "ConfigLike",
    "DataConfig",
    "Linspace",
    "ModelConfig",
    "Momentum",
    "Normal",
    "NormalDraw",
    "ReportConfig",
    "StartsConfig",
    "TrainConfig",
    "Uniform",
    "UniformDraw",
    "Values",
    "apply_overrides",
    "dump_yaml",
    "json_schema",
    "load_config",
    "parse_yaml",
    "validate",
]
