"""YAML: a safe loader that also reads 1e-3 as a float (YAML 1.2), refuses duplicate
keys, and finds the line of a field for error messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from jaxfit.errors import ConfigError


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


def yaml_line(text: str, path: Sequence[str | int]) -> int | None:
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
