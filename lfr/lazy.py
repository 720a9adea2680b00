"""Package namespaces whose names are imported on first use (PEP 562 ``__getattr__``).

Why: a Python worker that unpickles a UDF imports the UDF's module, and with it every
``__init__`` above it. Eager ``__init__`` files would make each executor import the whole
library -- the config stack, Delta's Python API, torch -- although a task runs a few functions.
The packed executor environment of ``model.runtime: onnx`` (``make executor-env``) has none of
those, so ``lfr.data``, ``lfr.embed`` and ``lfr.model`` export their public names lazily.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to its submodule (a name
    relative to ``package``, or a dotted absolute module name)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = names[name] if "." in names[name] else f"{package}.{names[name]}"
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
