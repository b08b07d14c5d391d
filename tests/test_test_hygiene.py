"""Assertions that cannot fail are bugs in the tests: this file finds them.

Every tests/*.py is parsed with `ast`, and an `assert` fails this test when its condition
is always true:

- a method or function of the package named without calling it (`assert interp.method`:
  a bound method is always true), alone or as an operand of `and`/`or`;
- a true constant (`assert 1`, `assert "text"`; `assert False` is a deliberate failure);
- a non-empty tuple, list, set or dict display (`assert (x, "message")`), or a lambda;
- a comparison of an expression with itself (`assert a == a`; not of calls, `f() == f()`
  checks determinism), or `len(...) >= 0`.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = sorted((ROOT / "tests").glob("*.py"))
PACKAGE = ROOT / "tflm_vmcu"

_PROPERTY_DECORATORS = {"property", "cached_property", "setter", "getter"}
# Methods of numpy, pathlib and str that tests might name without calling them.
_LIBRARY_METHODS = {"all", "any", "exists", "is_file", "is_dir", "startswith", "endswith"}


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


@cache
def project_callables() -> frozenset[str]:
    """Names of the package's methods and functions that are never also a property, a
    field or an instance attribute of some class (so `x.name` is surely a callable)."""
    callables: set[str] = set()
    values: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                callables.add(node.name)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for item in cls.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    if _decorator_names(item) & _PROPERTY_DECORATORS:
                        values.add(item.name)
                    else:
                        callables.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    values.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    values.update(t.id for t in item.targets if isinstance(t, ast.Name))
        for node in ast.walk(tree):  # self.x = ... anywhere
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            values.update(t.attr for t in targets if isinstance(t, ast.Attribute))
    return frozenset((callables - values) | _LIBRARY_METHODS)


def _local_functions(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _always_true(expr: ast.expr, functions: set[str]) -> str | None:
    """Why `expr` is true whatever the program state, or None."""
    if isinstance(expr, ast.Attribute) and expr.attr in project_callables():
        return f"'{ast.unparse(expr)}' is a method, never called (always true)"
    if isinstance(expr, ast.Name) and expr.id in functions:
        return f"'{expr.id}' is a function, never called (always true)"
    if isinstance(expr, ast.Constant) and expr.value:
        return f"constant {expr.value!r} is always true"
    if isinstance(expr, ast.Tuple | ast.List | ast.Set) and expr.elts:
        return f"a non-empty {type(expr).__name__.lower()} is always true"
    if isinstance(expr, ast.Dict) and expr.keys:
        return "a non-empty dict is always true"
    if isinstance(expr, ast.Lambda):
        return "a lambda is always true"
    if isinstance(expr, ast.BoolOp):
        for value in expr.values:  # `a and x.method`: that operand checks nothing
            why = _always_true(value, functions)
            if why:
                return why
    if isinstance(expr, ast.Compare):
        operands = [expr.left, *expr.comparators]
        for left, op, right in zip(operands, expr.ops, operands[1:], strict=False):
            same = ast.dump(left) == ast.dump(right)
            calls = any(isinstance(n, ast.Call) for n in ast.walk(left))  # f() == f() can differ
            if same and not calls and not isinstance(op, ast.NotEq | ast.IsNot):
                return f"'{ast.unparse(left)}' is compared with itself"
            if (
                isinstance(left, ast.Call)
                and isinstance(left.func, ast.Name)
                and left.func.id == "len"
                and isinstance(op, ast.GtE)
                and isinstance(right, ast.Constant)
                and right.value == 0
            ):
                return "a length is always >= 0"
    return None


def vacuous_asserts(source: str, filename: str = "<test>") -> list[str]:
    """'file:line: assert ...: why' for every assert in `source` that cannot fail."""
    tree = ast.parse(source, filename)
    functions = _local_functions(tree) | {
        n for n in project_callables() if n in _imported_names(tree)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            why = _always_true(node.test, functions)
            if why:
                found.append(f"{filename}:{node.lineno}: assert {ast.unparse(node.test)}: {why}")
    return found


def _imported_names(tree: ast.Module) -> set[str]:
    return {
        alias.asname or alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom)
        for alias in n.names
    }


def test_no_assertion_in_the_tests_is_always_true() -> None:
    found = [f for path in TESTS for f in vacuous_asserts(path.read_text(), path.name)]
    assert not found, "assertions that cannot fail:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "def t(interp):\n    assert interp.memory_guards_intact\n",
        "def t(interp):\n    assert interp.hazards == 0 and interp.memory_guards_intact\n",
        "from tflm_vmcu.compiler import compile_bytes\nassert compile_bytes\n",
        "def helper(): ...\nassert helper\n",
        "assert 1\n",
        "assert 'checked'\n",
        "def t(x):\n    assert (x == 1, 'x must be 1')\n",
        "def t(x):\n    assert [x]\n",
        "def t(x):\n    assert x == x\n",
        "def t(a):\n    assert a.pool_bytes <= a.pool_bytes\n",
        "def t(x):\n    assert len(x) >= 0\n",
        "assert lambda: False\n",
        "def t(a, b):\n    assert (a == b).all\n",
        "def t(path):\n    assert path.exists\n",
    ],
)
def test_the_check_catches_an_assertion_that_cannot_fail(source: str) -> None:
    assert vacuous_asserts(source), source


@pytest.mark.parametrize(
    "source",
    [
        "def t(interp):\n    assert interp.memory_guards_intact()\n",
        "def t(interp):\n    assert interp.hazards == 0\n",
        "def t(interp):\n    assert interp.has_plan\n",  # a property
        "def t(d):\n    assert d.bit_exact\n",  # a property
        "assert False\n",
        "def t(x, y):\n    assert x == y\n",
        "def t(x):\n    assert x != x\n",  # NaN check
        "def t(x):\n    assert len(x) >= 1\n",
        "def t(f):\n    assert f() == f()\n",  # a determinism check
        "def t(x):\n    assert ()\n",
    ],
)
def test_the_check_passes_assertions_that_can_fail(source: str) -> None:
    assert not vacuous_asserts(source), source
