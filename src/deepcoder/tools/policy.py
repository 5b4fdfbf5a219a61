"""Compile-time policy: a RestrictedPython transformer tuned for ordinary LLM-written code.

Stock RestrictedPython refuses several everyday constructs (``counts[k] += 1``,
``self.n += 1``, ``nonlocal``, ``x: int = 0``, ``eval``, ``__repr__``...). This
subclass allows them by rewriting them onto guarded runtime helpers (see
``runtime.py``) rather than by weakening the existing guards: names and
attributes starting with ``_`` stay forbidden, except for a short list of
dunder *method definitions* and the ``__init__`` attribute (checked at runtime).
"""

from __future__ import annotations

import ast

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer

# Dunder methods user classes may define; they only customise the user's own objects.
ALLOWED_DUNDER_METHODS = frozenset(
    [
        "__init__",
        "__post_init__",
        "__repr__",
        "__str__",
        "__hash__",
        "__bool__",
        "__len__",
        "__iter__",
        "__next__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__call__",
        "__enter__",
        "__exit__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__invert__",
        "__index__",
        "__add__",
        "__radd__",
        "__iadd__",
        "__sub__",
        "__rsub__",
        "__isub__",
        "__mul__",
        "__rmul__",
        "__imul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__rfloordiv__",
        "__mod__",
        "__rmod__",
        "__pow__",
        "__rpow__",
        "__and__",
        "__rand__",
        "__or__",
        "__ror__",
        "__xor__",
        "__rxor__",
        "__lshift__",
        "__rshift__",
        "__matmul__",
    ]
)


class PolicyError(Exception):
    """The code was refused by the sandbox policy (not a Python syntax error)."""


class SandboxTransformer(RestrictingNodeTransformer):
    """RestrictingNodeTransformer plus the constructs ordinary programs need."""

    def check_name(self, node, name, allow_magic_methods=False):
        if allow_magic_methods and name in ALLOWED_DUNDER_METHODS and node.col_offset != 0:
            return
        super().check_name(node, name)

    def visit_Name(self, node):
        # Reading __name__ enables the common `if __name__ == "__main__":` idiom.
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):
            return node
        return super().visit_Name(node)

    def visit_Attribute(self, node):
        # `super().__init__(...)` / `Base.__init__(self)`; the runtime guard only
        # grants `__init__` on super objects and classes defined in the sandbox.
        if node.attr == "__init__" and isinstance(node.ctx, ast.Load):
            call = ast.Call(
                func=ast.Name("_getattr_", ast.Load()),
                args=[self.visit(node.value), ast.Constant("__init__")],
                keywords=[],
            )
            return _located(call, node)
        return super().visit_Attribute(node)

    def visit_Nonlocal(self, node):
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_AnnAssign(self, node):
        if node.simple and isinstance(node.target, ast.Name):
            self.check_name(node, node.target.id)
        return self.node_contents_visit(node)

    def visit_Call(self, node):
        # Same as the parent minus its ban on `eval`: the sandbox's `eval`
        # builtin compiles its argument with this very policy.
        needs_wrap = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
        node = self.node_contents_visit(node)
        if needs_wrap:
            node.args.insert(0, node.func)
            node.func = ast.copy_location(ast.Name("_apply_", ast.Load()), node.args[0])
        return node

    def visit_AugAssign(self, node):
        """`obj[k] op= v` -> `_aug_item_(obj, k, op, v)`; `obj.a op= v` -> `_aug_attr_(...)`."""
        target = node.target
        if isinstance(target, ast.Name):
            return super().visit_AugAssign(node)
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        if isinstance(target, ast.Subscript):
            if isinstance(target.slice, ast.Slice):
                self.error(node, "Augmented assignment to a slice is not supported.")
                return node
            helper, key = "_aug_item_", self.visit(target.slice)
        else:
            if target.attr.startswith("_"):
                self.error(node, f'"{target.attr}" is an invalid attribute name because it starts with "_".')
                return node
            helper, key = "_aug_attr_", ast.Constant(target.attr)
        call = ast.Call(
            func=ast.Name(helper, ast.Load()),
            args=[self.visit(target.value), key, op, self.visit(node.value)],
            keywords=[],
        )
        return _located(ast.Expr(call), node)


def _located(new: ast.AST, old: ast.AST) -> ast.AST:
    """Give a generated node (and its generated children) the source position of `old`."""
    return ast.fix_missing_locations(ast.copy_location(new, old))


def compile_sandboxed(source: str, mode: str = "exec", filename: str = "<sandbox>"):
    """Compile `source` under the sandbox policy.

    Raises SyntaxError for invalid Python and PolicyError for refused constructs.
    """
    ast.parse(source, filename, mode)  # genuine syntax errors keep their own type
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    result = compiler(source, filename, policy=SandboxTransformer)
    if result.errors:
        raise PolicyError("; ".join(result.errors))
    return result.code
