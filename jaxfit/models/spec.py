"""A model from text, as a config names it: ``"gaussian(p1_) + gaussian(p2_) +
linear(bg_)"``, ``"step(form=erf) * exponential"``, ``"polynomial(degree=3)"``. Each
term is a built-in's name, optionally called with its prefix and options; terms are
joined by ``+ - * /`` and parentheses. Parsed, never run: names only.
"""

from __future__ import annotations

import ast

from jaxfit.models.library import ALIASES
from jaxfit.models.model import Model, Shape, names

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse(text: str) -> Model:
    """The model ``text`` names; ``ValueError`` (one line) for anything else."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{text!r} is not a model expression (e.g. 'gaussian(p1_) + linear(bg_)')") from None
    return _model(tree, text)


def _model(node: ast.AST, text: str) -> Model:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _model(node.left, text), _model(node.right, text)
        return left._combine(right, _OPS[type(node.op)])
    if isinstance(node, ast.Name):
        return Shape(_known(node.id), "")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = _known(node.func.id)
        if len(node.args) > 1:
            raise ValueError(f"{name}(...): one prefix at most, got {len(node.args)} arguments")
        prefix = _word(node.args[0], text) if node.args else ""
        options = tuple((k.arg, _option(k.value, text)) for k in node.keywords if k.arg)
        if name == "polynomial":
            options = tuple((k, int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in options)
        return Shape(name, prefix, options)
    raise ValueError(f"{text!r}: expected built-in models (e.g. gaussian(p1_)) joined by + - * /")


def _known(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in names():
        raise ValueError(f"unknown model {name!r}; the built-ins are {', '.join(names())}")
    return name


def _word(node: ast.AST, text: str) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ValueError(f"{text!r}: a prefix is a name such as p1_")


def _option(node: ast.AST, text: str) -> object:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return node.value
    raise ValueError(f"{text!r}: an option is a name or a number (e.g. form=erf, degree=3)")
