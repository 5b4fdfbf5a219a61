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
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safer_getattr,
)

from deepcoder.tools.policy import ALLOWED_DUNDER_METHODS, compile_sandboxed
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
_TYPE_MRO = type.__dict__["__mro__"]  # the real MRO, whatever a metaclass defines
_STR_FORMATTERS = (str.format, str.format_map)


def _real_mro(cls: type) -> tuple:
    return _TYPE_MRO.__get__(cls, type)


def check_name(name, what: str = "attribute") -> str:
    """`name` if it is an exact ``str`` not starting with ``_``; never calls methods of `name`."""
    if type(name) is not str:
        raise TypeError(f"{what} name must be a str, not {type(name).__name__}")
    if str.startswith(name, "_"):
        raise AttributeError(f'"{name}" is an invalid {what} name because it starts with "_"')
    return name


def check_class_namespace(namespace) -> None:
    """What a class statement may define is what ``type(name, bases, ns)`` may define."""
    for key in list(dict.keys(namespace)) if type(namespace) is dict else namespace:
        if type(key) is not str:
            raise TypeError("class attribute names must be str")
        if str.startswith(key, "_") and key not in ALLOWED_DUNDER_METHODS:
            raise AttributeError(f'"{key}" cannot be defined on a class in the sandbox')


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


class ClassRegistry:
    """The classes sandboxed code created, by identity (``in``/``==`` would trust their metaclass)."""

    def __init__(self):
        self._by_id: dict[int, type] = {}

    def add(self, cls: type) -> None:
        self._by_id[id(cls)] = cls

    def owns(self, cls) -> bool:
        return self._by_id.get(id(cls)) is cls

    def owns_mro_of(self, obj) -> bool:
        return any(self.owns(c) for c in _real_mro(type(obj)))


class _ClassFactory:
    """``__metaclass__`` hook: builds classes with their proper metaclass and records them."""

    def __init__(self, registry: ClassRegistry):
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


def make_sandbox_type(factory: _ClassFactory, guard_metaclass):
    """The sandbox's ``type``: one argument as usual (a metaclass comes back guarded); three
    arguments build a class under the same rules as a class statement. ``isinstance(x, type)``
    and ``issubclass(c, type)`` keep working."""

    class _TypeCheck(type):
        def __instancecheck__(cls, obj):
            return isinstance(obj, type)

        def __subclasscheck__(cls, sub):
            return issubclass(sub, type)

    class type_(metaclass=_TypeCheck):  # stands for the builtin
        def __new__(cls, *args, **kwargs):
            if len(args) == 1 and not kwargs:
                result = type(args[0])
                return guard_metaclass(result) if issubclass(result, type) else result
            if len(args) != 3:
                raise TypeError("type() takes 1 or 3 arguments")
            name, bases, namespace = args
            if type(namespace) is not dict:
                raise TypeError("type(): the namespace must be a dict")
            namespace = dict(namespace)
            check_class_namespace(namespace)
            namespace.setdefault("__module__", "__main__")
            return factory(name, tuple(bases), namespace, **kwargs)

    type_.__name__ = type_.__qualname__ = "type"
    return type_


class SandboxRuntime:
    """Holds the namespaces of one run and the guards bound to them."""

    def __init__(self, sink):
        self.classes = ClassRegistry()
        self._sink = sink
        self._factory = _ClassFactory(self.classes)
        self._guarded_metaclasses: dict[int, type] = {}
        self.type = make_sandbox_type(self._factory, self._guard_metaclass)
        self.modules = ModuleTable(self._module_overrides(), wrap=self._wrap_module_value)
        self._formatter = _SafeFormatter(self.getattr)
        self.namespaces: list[dict] = []
        self.namespace = self.new_namespace()
        self.builtins = self.namespace["__builtins__"]

    def new_namespace(self) -> dict:
        """A fresh global namespace with its own builtins dict (grading runs tests in one)."""
        namespace: dict[str, Any] = {"__name__": "__main__"}
        namespace["__builtins__"] = self._make_builtins(self._sink, namespace)
        self.namespaces.append(namespace)
        return namespace

    def is_sandbox_namespace(self, mapping) -> bool:
        return any(mapping is ns for ns in self.namespaces)

    # --- guards -----------------------------------------------------------------
    def getattr(self, obj, name, default=_MISSING):
        """Attribute guard: no `_` names, safe str.format, module attributes only as copies."""
        if name == "__init__" and type(name) is str and (type(obj) is super or self.classes.owns(obj)):
            return obj.__init__
        if type(name) is str and name in ("format", "format_map") and isinstance(obj, str):
            return self._safe_format(obj, name)
        try:
            value = safer_getattr(obj, name, raise_)
            if isinstance(value, types.ModuleType) and not self.modules.is_copy(value):
                raise AttributeError(f"module attribute '{name}' is not available in the sandbox")
        except AttributeError:
            if default is _MISSING:
                raise
            return default
        return self._guard_value(value)

    def _safe_format(self, text: str, name: str):
        if name == "format":
            return lambda *args, **kwargs: self._formatter.vformat(text, args, kwargs)
        return lambda mapping: self._formatter.vformat(text, (), mapping)

    def _guard_value(self, value):
        """str.format however it was reached (``super(S, s).format``, ``S.format`` via super)."""
        kind = type(value)
        if (
            kind is types.BuiltinMethodType
            and isinstance(value.__self__, str)
            and value.__name__ in ("format", "format_map")
        ):
            return self._safe_format(value.__self__, value.__name__)
        if kind is types.MethodDescriptorType and any(value is f for f in _STR_FORMATTERS):
            name = "format" if value is str.format else "format_map"
            return lambda text, *args, **kwargs: self._safe_format(str.__str__(text), name)(*args, **kwargs)
        if kind is type and issubclass(value, type):
            return self._guard_metaclass(value)
        return value

    def _guard_metaclass(self, meta: type):
        """A stand-in for metaclass `meta`: calling it with three arguments follows class rules."""
        if meta is type:
            return self.type
        guarded = self._guarded_metaclasses.get(id(meta))
        if guarded is None:
            factory, real = self._factory, meta

            class _Check(type):
                def __instancecheck__(cls, obj):
                    return isinstance(obj, real)

                def __subclasscheck__(cls, sub):
                    return issubclass(sub, real)

            class _Guarded(metaclass=_Check):
                def __new__(cls, *args, **kwargs):
                    if len(args) != 3:
                        raise TypeError(f"{real.__name__}() takes 3 arguments in the sandbox")
                    name, bases, namespace = args
                    namespace = dict(namespace)
                    check_class_namespace(namespace)
                    namespace.setdefault("__module__", "__main__")
                    cls_ = real(name, tuple(bases), namespace, **kwargs)
                    factory._registry.add(cls_)
                    return cls_

            _Guarded.__name__ = _Guarded.__qualname__ = real.__name__
            guarded = self._guarded_metaclasses[id(meta)] = _Guarded
        return guarded

    def _wrap_module_value(self, value):
        if isinstance(value, type) and issubclass(value, type):
            return self._guard_metaclass(value)
        return value

    def hasattr(self, obj, name):
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def write(self, obj):
        """Write guard: containers and objects created by the sandboxed code itself."""
        if issubclass(type(obj), WRITABLE_TYPES) or self._owns(obj):
            return obj
        raise TypeError(f"objects of type '{type(obj).__name__}' cannot be modified in the sandbox")

    def _owns(self, obj) -> bool:
        """By identity only: a metaclass's __eq__/__hash__ cannot make a host object ours."""
        if isinstance(obj, type):
            return self.classes.owns(obj)
        if type(obj) is types.FunctionType:
            return self.is_sandbox_namespace(obj.__globals__)
        return self.classes.owns_mro_of(obj)

    def setattr(self, obj, name, value):
        setattr(self.write(obj), check_name(name), value)

    def delattr(self, obj, name):
        delattr(self.write(obj), check_name(name))

    def setitem(self, obj, key, value):
        self.write(obj)[key] = value

    def delitem(self, obj, key):
        del self.write(obj)[key]

    def aug_item(self, obj, key, op, value):
        """`obj[key] op= value` (rewritten by the policy)."""
        result = INPLACE_OPS[op](obj[key], value)
        self.write(obj)[key] = result

    def aug_attr(self, obj, name, op, value):
        """`obj.name op= value` (rewritten by the policy)."""
        result = INPLACE_OPS[op](self.getattr(obj, name), value)
        setattr(self.write(obj), check_name(name), result)

    def make_eval(self, home: dict):
        """The `eval` builtin of namespace `home`: the same policy and guards; it sees its
        caller's local variables only when the caller is sandboxed code (never library code)."""

        def eval_(source, globals=None, locals=None):
            if type(source) is not str:
                raise TypeError("eval() in the sandbox only accepts a string expression")
            code = compile_sandboxed(str.strip(source), mode="eval", filename="<eval>")
            if globals is None and locals is None:
                caller = sys._getframe(1)
                scope = home
                if self.is_sandbox_namespace(caller.f_globals):
                    scope = caller.f_globals
                    if caller.f_code.co_name != "<module>":
                        locals = dict(caller.f_locals)
            else:
                if globals is not None and type(globals) is not dict:
                    raise TypeError("eval() globals must be a dict")
                if locals is not None and type(locals) is not dict:
                    raise TypeError("eval() locals must be a dict")
                scope = {k: v for k, v in (globals or {}).items() if type(k) is str and not k.startswith("_")}
                scope["__builtins__"] = home["__builtins__"]
                if locals is not None:
                    locals = {k: v for k, v in locals.items() if type(k) is str and not k.startswith("_")}
            return eval(code, scope, locals)

        eval_.__name__ = "eval"
        return eval_

    def _module_overrides(self) -> dict[str, dict[str, object]]:
        """Guarded replacements for library functions that set, get or exec caller-chosen names."""
        return {
            "operator": self._operator_overrides(),
            "functools": self._functools_overrides(),
            "dataclasses": self._dataclasses_overrides(),
        }

    def _require_owned_class(self, cls, what: str):
        if not (isinstance(cls, type) and self.classes.owns(cls)):
            raise TypeError(f"{what}() in the sandbox only accepts classes defined by the program")
        return cls

    def _functools_overrides(self) -> dict[str, object]:
        import functools

        defaults = (functools.WRAPPER_ASSIGNMENTS, functools.WRAPPER_UPDATES)

        def check(assigned, updated):
            if (
                (tuple(assigned), tuple(updated)) != defaults
                or type(assigned) is not tuple
                or type(updated) is not tuple
            ):
                raise TypeError("functools.wraps/update_wrapper: only the default attributes in the sandbox")

        def update_wrapper(wrapper, wrapped, assigned=defaults[0], updated=defaults[1]):
            check(assigned, updated)
            return functools.update_wrapper(self.write(wrapper), wrapped)

        def wraps(wrapped, assigned=defaults[0], updated=defaults[1]):
            check(assigned, updated)
            return lambda wrapper: update_wrapper(wrapper, wrapped)

        def total_ordering(cls):
            return functools.total_ordering(self._require_owned_class(cls, "total_ordering"))

        return {"update_wrapper": update_wrapper, "wraps": wraps, "total_ordering": total_ordering}

    def _dataclasses_overrides(self) -> dict[str, object]:
        import dataclasses

        def checked(cls):
            self._require_owned_class(cls, "dataclass")
            for name in vars(cls).get("__annotations__", {}):
                check_name(name, "field")
                if not name.isidentifier():
                    raise TypeError(f"invalid field name {name!r}")
            return cls

        def dataclass(cls=None, /, **kwargs):
            if cls is None:
                return lambda c: dataclasses.dataclass(checked(c), **kwargs)
            return dataclasses.dataclass(checked(cls), **kwargs)

        return {"dataclass": dataclass}

    def _operator_overrides(self) -> dict[str, object]:
        """Guarded replacements for operator.attrgetter / methodcaller / setitem / delitem."""

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

        return {
            "attrgetter": attrgetter,
            "methodcaller": methodcaller,
            "setitem": self.setitem,
            "delitem": self.delitem,
        }

    # --- namespace ----------------------------------------------------------------
    def _make_builtins(self, sink, home: dict) -> dict:
        table = {name: getattr(builtins, name) for name in PLAIN_BUILTINS}
        table["type"] = self.type
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
            eval=self.make_eval(home),
            __import__=self.modules.import_,
            __metaclass__=self._factory,
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
