"""Runtime guards and the single namespace that sandboxed code executes in.

RestrictedPython rewrites attribute access, item access, writes, augmented
assignment, ``print`` and class creation into calls to ``_getattr_``,
``_write_``, ``_print_``, ``__metaclass__``... This module supplies those
helpers plus a curated builtins dict (guarded ``getattr``/``setattr``/``eval``/
``__import__``; no ``open``, ``exec``, ``globals``, ``vars``, ``input``).
"""

from __future__ import annotations

import _string
import array
import builtins
import collections
import operator
import string
import sys
import types

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safer_getattr,
)

from deepcoder.tools.policy import compile_sandboxed
from deepcoder.tools.safe_modules import ModuleTable

INPLACE_OPS = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "|=": operator.ior,
    "^=": operator.ixor,
    "&=": operator.iand,
    "@=": operator.imatmul,
}

# Containers whose items/attributes sandboxed code may modify (besides its own objects).
WRITABLE_TYPES = (dict, list, bytearray, collections.deque, array.array)

PLAIN_BUILTINS = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "zip",
    "__build_class__",
    "None",
    "True",
    "False",
    "Ellipsis",
    "NotImplemented",
]

_MISSING = object()


class _SafeFormatter(string.Formatter):
    """str.format semantics, with field lookups going through the attribute guard."""

    def __init__(self, getattr_guard):
        self._getattr_guard = getattr_guard

    def get_field(self, field_name, args, kwargs):
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = self._getattr_guard(obj, key) if is_attr else obj[key]
        return obj, first


class _Printer:
    """Target of RestrictedPython's print rewrite; writes straight to the output sink."""

    def __init__(self, sink):
        self._sink = sink

    def __call__(self):  # the `printed` variable of RestrictedPython
        return ""

    def _call_print(self, *objects, sep=" ", end="\n", file=None, flush=False):
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        text = sep.join(map(str, objects)) + end
        if file is None:
            self._sink(text)
        else:
            safer_getattr(file, "write", raise_)(text)


class _ClassFactory:
    """``__metaclass__`` hook: builds classes with their proper metaclass and records them."""

    def __init__(self, registry: set):
        self._registry = registry

    @staticmethod
    def _metaclass(bases):
        winner = type
        for base in bases:
            meta = type(base)
            if issubclass(meta, winner):
                winner = meta
            elif not issubclass(winner, meta):
                raise TypeError("metaclass conflict between the base classes")
        return winner

    def __prepare__(self, name, bases, **kwargs):
        return self._metaclass(bases).__prepare__(name, bases, **kwargs)

    def __call__(self, name, bases, namespace, **kwargs):
        cls = self._metaclass(bases)(name, bases, namespace, **kwargs)
        self._registry.add(cls)
        return cls


class SandboxRuntime:
    """Holds the namespace of one run and the guards bound to it."""

    def __init__(self, sink):
        self.classes: set[type] = set()
        self.modules = ModuleTable({"operator": self._operator_overrides()})
        self._formatter = _SafeFormatter(self.getattr)
        self.builtins = self._make_builtins(sink)
        self.namespace = {"__builtins__": self.builtins, "__name__": "__main__"}

    # --- guards -----------------------------------------------------------------
    def getattr(self, obj, name, default=_MISSING):
        """Attribute guard: no `_` names, safe str.format, module attributes only as copies."""
        if name == "__init__" and (isinstance(obj, super) or obj in self.classes):
            return obj.__init__
        if name in ("format", "format_map") and isinstance(obj, str):
            if name == "format":
                return lambda *args, **kwargs: self._formatter.vformat(obj, args, kwargs)
            return lambda mapping: self._formatter.vformat(obj, (), mapping)
        try:
            value = safer_getattr(obj, name, raise_)
            if isinstance(value, types.ModuleType) and not self.modules.is_copy(value):
                raise AttributeError(f"module attribute '{name}' is not available in the sandbox")
        except AttributeError:
            if default is _MISSING:
                raise
            return default
        return value

    def hasattr(self, obj, name):
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def write(self, obj):
        """Write guard: containers and objects created by the sandboxed code itself."""
        if isinstance(obj, WRITABLE_TYPES) or self._owns(obj):
            return obj
        raise TypeError(f"objects of type '{type(obj).__name__}' cannot be modified in the sandbox")

    def _owns(self, obj) -> bool:
        if isinstance(obj, type):
            return obj in self.classes
        if isinstance(obj, types.FunctionType):
            return obj.__globals__ is self.namespace
        return any(cls in self.classes for cls in type(obj).__mro__)

    def setattr(self, obj, name, value):
        if name.startswith("_"):
            raise AttributeError(f'"{name}" is an invalid attribute name because it starts with "_"')
        setattr(self.write(obj), name, value)

    def delattr(self, obj, name):
        if name.startswith("_"):
            raise AttributeError(f'"{name}" is an invalid attribute name because it starts with "_"')
        delattr(self.write(obj), name)

    def aug_item(self, obj, key, op, value):
        """`obj[key] op= value` (rewritten by the policy)."""
        result = INPLACE_OPS[op](obj[key], value)
        self.write(obj)[key] = result

    def aug_attr(self, obj, name, op, value):
        """`obj.name op= value` (rewritten by the policy)."""
        result = INPLACE_OPS[op](self.getattr(obj, name), value)
        setattr(self.write(obj), name, result)

    def eval(self, source, globals=None, locals=None):
        """`eval` of an expression string through the same policy and guards."""
        if not isinstance(source, str):
            raise TypeError("eval() in the sandbox only accepts a string expression")
        code = compile_sandboxed(source.strip(), mode="eval", filename="<eval>")
        if globals is None and locals is None:
            scope = self.namespace
            locals = dict(sys._getframe(1).f_locals)  # see the caller's local variables
        else:
            scope = {k: v for k, v in (globals or {}).items() if not str(k).startswith("_")}
            scope["__builtins__"] = self.builtins
            if locals is not None:
                locals = {k: v for k, v in locals.items() if not str(k).startswith("_")}
        return eval(code, scope, locals)

    def _operator_overrides(self) -> dict[str, object]:
        """Guarded replacements for operator.attrgetter / methodcaller."""

        def attrgetter(*names):
            def resolve(obj, dotted):
                for part in dotted.split("."):
                    obj = self.getattr(obj, part)
                return obj

            if len(names) == 1:
                return lambda obj: resolve(obj, names[0])
            return lambda obj: tuple(resolve(obj, n) for n in names)

        def methodcaller(name, *args, **kwargs):
            return lambda obj: self.getattr(obj, name)(*args, **kwargs)

        return {"attrgetter": attrgetter, "methodcaller": methodcaller}

    # --- namespace ----------------------------------------------------------------
    def _make_builtins(self, sink) -> dict:
        table = {name: getattr(builtins, name) for name in PLAIN_BUILTINS}
        table.update(
            (name, value)
            for name, value in vars(builtins).items()
            if isinstance(value, type) and issubclass(value, BaseException)
        )
        printer = _Printer(sink)
        table.update(
            getattr=self.getattr,
            hasattr=self.hasattr,
            setattr=self.setattr,
            delattr=self.delattr,
            eval=self.eval,
            __import__=self.modules.import_,
            __metaclass__=_ClassFactory(self.classes),
            _getattr_=self.getattr,
            _getitem_=operator.getitem,
            _getiter_=iter,
            _write_=self.write,
            _iter_unpack_sequence_=guarded_iter_unpack_sequence,
            _unpack_sequence_=guarded_unpack_sequence,
            _inplacevar_=lambda op, x, y: INPLACE_OPS[op](x, y),
            _apply_=lambda func, *args, **kwargs: func(*args, **kwargs),
            _aug_item_=self.aug_item,
            _aug_attr_=self.aug_attr,
            _print_=lambda *_: printer,
            _print=printer,
        )
        return table
