"""``load``: any saved model, whatever its kind, from its artifact folder.

Why a module of its own: the manifest's ``kind`` picks the model class, and each kind's module
knows only itself (``lfr.model.lightfusion``, ``lfr.model.xcross``); dispatching here keeps both
in the model layer with no import between them and nothing imported from a higher layer.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from lfr.model.artifact import ArtifactError, read_manifest

#: ``kind`` in a manifest -> the module whose ``load`` reads it (imported when needed: the torch-free
#: ``model.runtime: onnx`` path must not import the torch modules). LightFusionRec manifests carry no ``kind``.
LOADERS: dict[str, str] = {"lightfusionrec": "lfr.model.lightfusion", "xcross": "lfr.model.xcross"}
ONNX_LOADER = "lfr.model.onnxrt"
DEFAULT_KIND = "lightfusionrec"


def load(path: str | os.PathLike, precision: str | None = None, runtime: str | None = None,
         quantize: str | None = None) -> Any:
    """The model saved at ``path``, verified against its manifest (every file's sha256; no pickle).

    Parameters
    ----------
    path : str or os.PathLike
        An artifact folder written by ``model.save`` / ``jobs/train.py`` (``manifest.json``, ``modules.json``
        and each module's config + weights).
    precision : {"auto", "bf16", "fp32"}, optional
        Overrides the saved ``model.precision`` (a run's setting, as the embed jobs pass it); either is
        resolved for this machine's CPU (``auto``: bf16 only with native bf16).
    runtime : {"torch", "onnx"}, optional
        ``model.runtime`` (None: torch): ``onnx`` runs a LightFusionRec artifact's ONNX export without torch
        (``lfr.model.onnxrt``; X-Cross artifacts are refused with an ``ArtifactError``).
    quantize : {"none", "int8"}, optional
        ``model.quantize`` (None: none): ``int8`` runs the export's int8 encoder (``runtime="onnx"`` only).

    Returns
    -------
    LightFusionModel, XCrossModel or OnnxLightFusion
        Picked by the manifest's ``kind`` and ``runtime``; each has ``embed(titles, descriptions, genres,
        batch_size)``, ``model_version`` and ``output_dim``.

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
    if runtime not in (None, "torch"):
        return importlib.import_module(ONNX_LOADER).load(path, precision=precision, quantize=quantize)
    if quantize not in (None, "none"):
        raise ArtifactError(f"model.quantize={quantize} needs model.runtime=onnx")
    kind = str(read_manifest(path).get("kind", DEFAULT_KIND))
    if kind not in LOADERS:
        raise ArtifactError(f"model artifact {path}: unknown model kind {kind!r} (known: {', '.join(LOADERS)})")
    return importlib.import_module(LOADERS[kind]).load(path, precision=precision)
