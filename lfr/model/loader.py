"""``load``: any saved model, whatever its kind, from its artifact folder.

Why a module of its own: the manifest's ``kind`` picks the model class, and each kind's module
knows only itself (``lfr.model.lightfusion``, ``lfr.model.xcross``); dispatching here keeps both
in the model layer with no import between them and nothing imported from a higher layer.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from lfr.model import lightfusion, xcross
from lfr.model.artifact import ArtifactError, read_manifest

#: ``kind`` in a manifest -> its loader. LightFusionRec manifests carry no ``kind`` (the first kind).
LOADERS: dict[str, Callable[..., Any]] = {"lightfusionrec": lightfusion.load, xcross.KIND: xcross.load}
DEFAULT_KIND = "lightfusionrec"


def load(path: str | os.PathLike, precision: str | None = None) -> Any:
    """The model saved at ``path`` (``LightFusionModel`` or ``XCrossModel``), verified against its manifest.

    ``precision`` (auto | bf16 | fp32) overrides the saved ``model.precision``; the result is resolved
    for this machine's CPU. Raises ``ArtifactMissing`` when nothing was saved there and
    ``ArtifactError`` for a damaged artifact or an unknown kind.
    """
    kind = str(read_manifest(path).get("kind", DEFAULT_KIND))
    if kind not in LOADERS:
        raise ArtifactError(f"model artifact {path}: unknown model kind {kind!r} (known: {', '.join(LOADERS)})")
    return LOADERS[kind](path, precision=precision)
