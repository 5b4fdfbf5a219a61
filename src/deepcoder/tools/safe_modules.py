"""The import allow-list and the read-only module copies sandboxed code receives.

Sandboxed code never gets a real module object: ``import json`` yields a fresh
``ModuleType`` holding only json's public, non-module attributes, so paths such
as ``json.codecs`` or ``typing.sys`` back to the host do not exist. A few public
functions that evaluate strings or perform unguarded attribute lookups are
removed or replaced (see ``DENIED`` and ``runtime.py``).
"""

from __future__ import annotations

import importlib
import types

ALLOWED_MODULES = (
    "math",
    "cmath",
    "re",
    "collections",
    "collections.abc",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "json",
    "typing",
    "dataclasses",
    "statistics",
    "fractions",
    "decimal",
    "operator",
    "random",
    "copy",
    "hashlib",
    "datetime",
    "enum",
    "abc",
    "numbers",
    "textwrap",
    "unicodedata",
    "array",
)

# Modules the allowed ones import lazily, loaded by the fork server up front: a jailed child
# runs as an unprivileged uid that may not be able to read the interpreter's files.
LAZY_IMPORTS = (
    "_strptime",
    "encodings.idna",
    "encodings.ascii",
    "encodings.latin_1",
    "_pydecimal",
    "unicodedata",
    "_sha256",
    "_sha512",
    "_md5",
    "_sha1",
    "_blake2",
    "_sha3",
)

# Public names that reach eval() or getattr() on attacker-chosen strings.
DENIED = {
    "string": {"Formatter"},  # Formatter.format("{0.__class__}") walks dunder attributes
    "typing": {"get_type_hints"},  # evaluates string annotations with the real eval
    "functools": {"singledispatch", "singledispatchmethod"},  # call get_type_hints
    "dataclasses": {"make_dataclass"},  # field names are not checked for dunders
    "copy": {"dispatch_table"},  # copyreg's live table: a reducer there setattr()s anything
    "abc": {"update_abstractmethods"},  # setattr(__abstractmethods__) on any class
    # update a module's globals (sys.modules[cls.__module__]) with caller-chosen names
    "enum": {"global_enum", "global_enum_repr", "global_flag_repr", "global_str"},
}
# Mutable containers of the host modules are handed out as copies (copy.dispatch_table,
# hashlib.algorithms_available, typing.EXCLUDED_ATTRIBUTES: no shared state to poison).
MUTABLE_CONTAINERS = (dict, list, set, bytearray)


class ModuleTable:
    """Builds (once) and hands out the sandbox copies of allowed modules."""

    def __init__(self, overrides: dict[str, dict[str, object]] | None = None, wrap=None):
        self._overrides = overrides or {}
        self._wrap = wrap or (lambda value: value)
        self._copies: dict[str, types.ModuleType] = {}

    def get(self, name: str) -> types.ModuleType:
        """The sandbox copy of module `name`; ImportError if it is not allowed."""
        if type(name) is not str or name not in ALLOWED_MODULES:
            raise ImportError(
                f"import of '{name}' is not allowed in the sandbox (allowed: {', '.join(ALLOWED_MODULES)})"
            )
        copy = self._copies.get(name)
        if copy is None:
            copy = self._copies[name] = self._copy(importlib.import_module(name))
            parent, _, child = name.rpartition(".")
            if parent:  # `import collections.abc` also makes `collections.abc` reachable
                setattr(self.get(parent), child, copy)
        return copy

    def is_copy(self, module: types.ModuleType) -> bool:
        return self._copies.get(module.__name__) is module

    def _copy(self, module: types.ModuleType) -> types.ModuleType:
        name = module.__name__
        copy = types.ModuleType(name, module.__doc__)
        denied = DENIED.get(name, set())
        for attr, value in vars(module).items():
            if attr.startswith("_") or attr in denied:
                continue
            if isinstance(value, types.ModuleType):
                if value.__name__ not in ALLOWED_MODULES:
                    continue
                value = self.get(value.__name__)
            elif type(value) in MUTABLE_CONTAINERS:
                value = type(value)(value)
            setattr(copy, attr, self._wrap(value))
        for attr, value in self._overrides.get(name, {}).items():
            setattr(copy, attr, value)
        return copy

    def import_(self, name, globals=None, locals=None, fromlist=(), level=0):
        """``__import__`` replacement: allowed modules only, as sandbox copies."""
        if type(name) is not str or level != 0:
            raise ImportError("relative imports are not allowed in the sandbox")
        module = self.get(name)
        if fromlist:
            return module
        return self.get(name.partition(".")[0])
