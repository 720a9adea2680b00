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
    """The model saved at ``path``, verified against its manifest (every file's sha256; no pickle).

    Parameters
    ----------
    path : str or os.PathLike
        An artifact folder written by ``model.save`` / ``jobs/train.py`` (``manifest.json``, ``modules.json``
        and each module's config + weights).
    precision : {"auto", "bf16", "fp32"}, optional
        Overrides the saved ``model.precision`` (a run's setting, as the embed jobs pass it); either is
        resolved for this machine's CPU (``auto``: bf16 only with native bf16).

    Returns
    -------
    LightFusionModel or XCrossModel
        Picked by the manifest's ``kind``; both have ``embed(titles, descriptions, genres, batch_size)``,
        ``model_version`` and ``output_dim``.

    Raises
    ------
    ArtifactMissing
        Nothing was saved at ``path`` (a ``UsageError``: run jobs/train.py first).
    ArtifactError
        A damaged artifact (a file's digest differs, a stray file) or an unknown kind.

    Example
    -------
    >>> model = load("work/models/lightfusionrec")                       # doctest: +SKIP
    >>> vectors = model.embed(None, ["A boy wizard goes to school."], [["Fantasy"]], 64)  # doctest: +SKIP
    """
    kind = str(read_manifest(path).get("kind", DEFAULT_KIND))
    if kind not in LOADERS:
        raise ArtifactError(f"model artifact {path}: unknown model kind {kind!r} (known: {', '.join(LOADERS)})")
    return LOADERS[kind](path, precision=precision)
