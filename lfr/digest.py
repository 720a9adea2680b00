"""Content digests for keys that must notice change: of source code, data files and settings.

Why one home: the train job's skip key (``lfr.train.job.inputs_key``) and the resume files of the
evaluation benches both decide "this result is still valid"; each must change when the code that
made the result changes, not only when its inputs or settings do. A fix to training code must
retrain without ``--force``; a rerun of an interrupted evaluation after a code change must not
reuse ranks computed by the old code.

Every digest is a sha256 over a stable order (sorted relative paths, sorted JSON keys), so it is
the same on every machine, from a checkout or from an installed wheel (``importlib.resources``
reads packages inside a zip too).
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

SOURCE_SUFFIXES = (".py",)
Tree = Union[Path, "importlib.resources.abc.Traversable"]


def _walk(root: Tree, prefix: str = "") -> Iterable[tuple[str, Tree]]:
    """``(relative path, entry)`` of every source file under ``root``, caches skipped."""
    for entry in root.iterdir():
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _walk(entry, rel + "/")
        elif entry.name.endswith(SOURCE_SUFFIXES):
            yield rel, entry


def sources_digest(roots: Mapping[str, Tree]) -> str:
    """sha256 of the source files under each ``{name: folder}``, in sorted order of
    ``name/relative path``; each file is hashed with its path, so a rename changes it too."""
    files = sorted((f"{name}/{rel}", entry) for name, root in roots.items() for rel, entry in _walk(root))
    h = hashlib.sha256()
    for rel, entry in files:
        h.update(rel.encode("utf-8") + b"\0" + entry.read_bytes() + b"\0")
    return h.hexdigest()


def code_digest(packages: Iterable[str]) -> str:
    """sha256 of the ``.py`` sources of the importable ``packages`` (e.g. ``lfr.model``)."""
    return sources_digest({name: importlib.resources.files(name) for name in sorted(set(packages))})


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 of the named files' bytes, in sorted order of their names (not their folders:
    the same data copied elsewhere has the same digest)."""
    h = hashlib.sha256()
    for path in sorted(paths, key=lambda p: (Path(p).name, str(p))):
        h.update(Path(path).name.encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def settings_digest(settings: Any) -> str:
    """sha256 of ``settings`` as canonical JSON (sorted keys; values JSON cannot hold as ``str``)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
