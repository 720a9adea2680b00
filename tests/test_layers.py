"""The layering rule of docs/CONTRACTS.md, checked on the source (no import is executed).

Why a test: an upward import or a cycle between modules works until the day an import order
changes; it is found here, by reading every ``import`` of every module in ``lfr/`` (module level
and inside functions), instead of by a failing job. Also the code-style limit on function length.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The layers, lowest first (docs/CONTRACTS.md "Layers"); lexical sits with embed (both build tables).
LAYERS = {"lazy": 0, "config": 0, "settings": 0, "errors": 0, "digest": 0, "phases": 0, "spark": 1, "data": 2,
          "model": 3, "train": 4, "embed": 4, "lexical": 4, "score": 5, "eval": 6}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "lfr").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, imported name)``: every ``import x`` and ``from x import y`` (as ``x`` and ``x.y``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[:len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """``({module: lfr modules it imports}, [upward or forbidden imports])``."""
    mods, graph, bad = _modules(), {}, []
    for mod, path in mods.items():
        for line, target in _imports(mod, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if target.split(".")[0] in ("jobs", "udfs"):
                bad.append(f"{where}: {mod} imports {target} (lfr never imports jobs/ or udfs/)")
            if target not in mods or target == mod:
                continue
            graph.setdefault(mod, set()).add(target)
            if (_layer(target) or 0) > (_layer(mod) if _layer(mod) is not None else 99):
                bad.append(f"{where}: {mod} imports {target}, a higher layer")
    return graph, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of modules; a package's ``__init__`` re-exporting its own modules
    (and those modules importing their package) is not a cycle between modules."""
    def edges(v):
        return [w for w in graph.get(v, ()) if not w.startswith(v + ".") and not v.startswith(w + ".")]

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_lfr_imports_only_downward():
    _, bad = _graph()
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_lfr_modules():
    graph, _ = _graph()
    assert "lfr.model.xcross" in graph and "lfr.train.xcross" in graph   # the scan sees both model kinds
    assert not _cycles(graph), _cycles(graph)


def test_no_function_over_the_length_limit():
    long = []
    for folder in ("lfr", "jobs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)
