"""Parameter expressions (lmfit's ``expr``): ``"p1_sigma"``, ``"p1_center + delta"``,
``"2*sqrt(2*log(2))*sigma"`` — parsed once into a ``jax.numpy`` function of the other
parameters. Only arithmetic, numbers, parameter names and the functions in
``FUNCTIONS`` are allowed: an expression is data, never code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exp": jnp.exp,
    "log": jnp.log,
    "log10": jnp.log10,
    "sqrt": jnp.sqrt,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "arctan": jnp.arctan,
    "tanh": jnp.tanh,
    "abs": jnp.abs,
    "max": jnp.maximum,
    "min": jnp.minimum,
}
CONSTANTS = {"pi": float(np.pi), "e": float(np.e)}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class Expression:
    """A parsed expression: ``names`` it reads, called with a mapping of values."""

    def __init__(self, text: str, known: tuple[str, ...]) -> None:
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise ValueError(f"expr {text!r}: not an expression") from None
        self.text = text
        self.names: set[str] = set()
        self._known = set(known)
        self._check(tree)
        self._tree = tree

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            pass
        elif isinstance(node, ast.Name):
            if node.id in self._known:
                self.names.add(node.id)
            elif node.id not in CONSTANTS:
                raise ValueError(
                    f"expr {self.text!r}: unknown name {node.id!r}; the parameters are {', '.join(sorted(self._known))}"
                )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in FUNCTIONS:
                raise ValueError(
                    f"expr {self.text!r}: unknown function {node.func.id!r}; allowed: {', '.join(FUNCTIONS)}"
                )
            for arg in node.args:
                self._check(arg)
        else:
            raise ValueError(
                f"expr {self.text!r}: only numbers, parameter names, + - * / ** and {', '.join(FUNCTIONS)} are allowed"
            )

    def __call__(self, values: Mapping[str, Any]) -> Any:
        return self._eval(self._tree, values)

    def _eval(self, node: ast.AST, values: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, values), self._eval(node.right, values))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, values))
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id] if node.id in self.names else CONSTANTS[node.id]
        assert isinstance(node, ast.Call)
        return FUNCTIONS[node.func.id](*(self._eval(a, values) for a in node.args))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def evaluation_order(exprs: Mapping[str, Expression]) -> list[str]:
    """The tied names in an order where each comes after the tied names it reads; a
    cycle is a ``ValueError`` that names it."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ValueError(f"expr: the tied parameters form a cycle: {cycle}")
        state[name] = 1
        for dep in sorted(exprs[name].names & exprs.keys()):
            visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in exprs:
        visit(name, ())
    return order
