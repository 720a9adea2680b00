"""Getting the model artifact to the Python workers, once, and loading it once per worker.

Driver side -- ``ship_artifact(spark, model_dir, mode) -> ArtifactRef``:

The default (``mode="archive"``, the cluster code path) packs the artifact folder into
one uncompressed tar named after its ``model_version`` and registers it with
``SparkContext.addArchive``. Why this and not a broadcast of the folder's bytes:

* Spark ships an added archive **once per executor** (fetched over the driver's file
  server / from the URI, cached in the executor's SparkFiles dir, unpacked there), not
  once per task; every Python worker of that executor reads the unpacked files from local
  disk, so the transformers/fasttext loaders get the real files they expect.
* A broadcast of ~90 MB of MiniLM bytes would be pickled into the driver's memory, and
  every Python worker would deserialise the whole value into its own memory before
  writing the files out again -- per worker, not per executor.
* ``addFile`` of a directory is refused for local directories outside local mode, and two
  artifacts with the same folder name (``.../lightfusionrec``) would collide in SparkFiles;
  a tar named ``lfr-model-<model_version>-<sha256 of the tar>.tar`` is content-addressed, so a
  retrained (or tampered) model in the same session is a different file and a repeated call is a no-op.

A local artifact is verified on the driver first (every file against the manifest's sha256), so a damaged
or tampered model fails the job before it reads or writes any table; the workers' loader verifies again.

A remote URI (``s3a://``, ``hdfs://``, ...) is added with ``addFile(recursive=True)``:
executors fetch the folder straight from storage. ``mode="path"`` (local masters, or a
filesystem every worker mounts) ships nothing and loads from the given path.

The model loader: the worker turns the artifact's local path into a model with a
``"module:function"`` the ref names (``ArtifactRef.loader``; default ``lfr.model:load``, which also
loads X-Cross artifacts), as ``predict_batch_udf`` takes a ``make_predict_fn``. Another loader --
a wrapper that injects a fault, a fake model in tests -- is chosen per call (``ship_artifact(...,
loader=)``) or per session with the Spark setting ``spark.lfr.model.loader``; its module must be
importable on the executors (``--py-files`` / ``addPyFile``).

Worker side: ``lfr.embed.udf`` (the UDF and its per-worker model cache).
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from typing import Optional

from lfr.errors import UsageError
from lfr.model.artifact import (
    MANIFEST,
    ArtifactError,
    artifact_missing,
    model_version_of,
    parse_manifest,
    read_manifest,
    verify_artifact,
)

log = logging.getLogger(__name__)

SHIP_MODES = ("archive", "path")
DEFAULT_LOADER = "lfr.model:load"
LOADER_CONF = "spark.lfr.model.loader"          # the session's loader when ship_artifact is given none
_LOADER_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


@dataclass(frozen=True)
class ArtifactRef:
    """What a task needs to find the artifact: small and picklable (it travels with the UDF)."""

    model_version: str
    mode: str          # "archive" (SparkFiles name of the unpacked tar) | "file" (SparkFiles folder) | "path"
    location: str      # SparkFiles name or filesystem path
    precision: Optional[str] = None  # model.precision of the run (auto|bf16|fp32); None: the artifact's own
    dim: Optional[int] = None        # the artifact's output dimension (its manifest); None: the loaded model's
    loader: str = DEFAULT_LOADER     # "module:function(path, precision=None) -> model", run on the worker
    runtime: str = "torch"           # model.runtime: torch | onnx (the loader gets runtime= and quantize= for onnx)
    quantize: str = "none"           # model.quantize: none | int8 (onnx only)

    def __post_init__(self):
        if not isinstance(self.loader, str) or not _LOADER_SPEC.match(self.loader):
            raise UsageError(f"model loader must be 'module:function' (like {DEFAULT_LOADER}), got {self.loader!r}")

    def local_path(self) -> str:
        if self.mode == "path":
            return self.location
        from pyspark import SparkFiles

        return SparkFiles.get(self.location)


def artifact_manifest(spark, model_dir: str) -> dict:
    """The artifact's manifest (not verified here: :func:`ship_artifact` and each worker's loader do that);
    a remote one is read through Spark (the driver may not mount the bucket). ``ArtifactMissing`` when there
    is none."""
    from lfr.config import is_uri  # driver side: executors unpickling an ArtifactRef need no config stack

    if not is_uri(model_dir):
        return read_manifest(model_dir)
    from pyspark.errors import AnalysisException

    try:
        rows = spark.read.text(model_dir.rstrip("/") + "/" + MANIFEST, wholetext=True).collect()
    except AnalysisException as exc:   # PATH_NOT_FOUND
        raise artifact_missing(model_dir, f"has no readable {MANIFEST} ({exc.getErrorClass() or exc})") from exc
    return parse_manifest("\n".join(r.value for r in rows), model_dir)


def artifact_version(spark, model_dir: str) -> str:
    """``model_version`` of the artifact (``artifact_manifest``)."""
    return model_version_of(artifact_manifest(spark, model_dir), model_dir)


def output_dim_of(manifest: dict) -> Optional[int]:
    """The embedding dimension the manifest promises (``dims.output``, both model kinds); None if absent."""
    dim = (manifest.get("dims") or {}).get("output") if isinstance(manifest.get("dims"), dict) else None
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def session_loader(spark) -> str:
    """The session's model loader: the Spark setting ``spark.lfr.model.loader``, else the default."""
    try:
        return str(spark.conf.get(LOADER_CONF, None) or DEFAULT_LOADER)
    except Exception:  # a conf that cannot be read is the default's business, not a failure
        return DEFAULT_LOADER


_ship_lock = threading.Lock()
_tmp_dirs: list[str] = []


def _cleanup() -> None:
    for d in _tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _shipped_on(sc) -> dict:
    """The refs this SparkContext already received, kept on the context itself: a ref is valid exactly
    as long as the context that got its archive (a module-level table keyed by ``id(sc)`` could hand a
    new context, reusing a stopped one's id, an archive it never received)."""
    shipped = getattr(sc, "_lfr_shipped", None)
    if shipped is None:
        shipped = sc._lfr_shipped = {}
    return shipped


def ship_artifact(spark, model_dir: str, mode: str, loader: Optional[str] = None, runtime: Optional[str] = None
                  ) -> ArtifactRef:
    """Make the artifact at ``model_dir`` available to every executor; see the module doc.
    ``mode``: ``embed.ship_model`` (archive | path). ``loader``: the workers' model loader
    (None: ``session_loader``). ``runtime``: ``model.runtime`` (None: torch); ``onnx`` is refused here, before any
    task, for an artifact without an ONNX export (``lfr.model.onnxrt.onnx_unready``)."""
    from lfr.config import is_uri

    if mode not in SHIP_MODES:
        raise ValueError(f"unknown ship mode {mode!r} (have: {', '.join(SHIP_MODES)})")
    sc = spark.sparkContext
    manifest = artifact_manifest(spark, model_dir)
    if runtime == "onnx":
        from lfr.model.onnxrt import onnx_unready

        why = onnx_unready(manifest)
        if why:
            raise ArtifactError(f"model artifact {model_dir}: {why}")
    version, dim = model_version_of(manifest, model_dir), output_dim_of(manifest)
    loader = loader or session_loader(spark)
    key = (model_dir, mode, loader)
    with _ship_lock:
        shipped = _shipped_on(sc)
        ref = shipped.get(key)
        if ref is not None and ref.model_version == version:
            return ref
        if not is_uri(model_dir):
            # every file against the manifest, before the job reads or writes any table: a damaged or
            # tampered artifact fails here, naming the file, not in the first task after the catalog sync
            verify_artifact(model_dir)
        if mode == "path":
            ref = ArtifactRef(version, "path", model_dir, dim=dim, loader=loader)
        elif is_uri(model_dir):
            sc.addFile(model_dir, recursive=True)
            ref = ArtifactRef(version, "file", os.path.basename(model_dir.rstrip("/")), dim=dim, loader=loader)
        else:
            ref = ArtifactRef(version, "archive", _add_archive(sc, model_dir, version), dim=dim, loader=loader)
        shipped[key] = ref
        return ref


def _add_archive(sc, model_dir: str, version: str) -> str:
    """Pack ``model_dir`` and add it to the SparkContext once; returns the archive's SparkFiles name."""
    tar_path = _pack(model_dir)
    # Named by the bytes packed, not only by the manifest's claim: a folder whose files were
    # changed after publishing (same model_version) must not reuse an archive Spark already
    # holds under that name -- executors would load the other bytes.
    name = f"lfr-model-{version}-{_sha256(tar_path)[:12]}"
    named = os.path.join(os.path.dirname(tar_path), name + ".tar")
    os.replace(tar_path, named)
    if not any(a.endswith(f"#{name}") or a.endswith(name + ".tar") for a in _list_archives(sc)):
        sc.addArchive(f"{named}#{name}")
    log.info("shipping model %s to executors as archive %s (%.1f MB)", version, name, os.path.getsize(named) / 1e6)
    return name


def _pack(model_dir: str) -> str:
    """The artifact folder as one uncompressed tar (weights do not compress) in a private temp dir."""
    tmp = tempfile.mkdtemp(prefix="lfr-ship-")
    _tmp_dirs.append(tmp)
    tar_path = os.path.join(tmp, "artifact.tar")
    with tarfile.open(tar_path, "w") as tar:
        for entry in sorted(os.listdir(model_dir)):
            tar.add(os.path.join(model_dir, entry), arcname=entry)
    return tar_path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _list_archives(sc) -> list[str]:
    try:
        return list(sc.listArchives)
    except Exception:  # older PySpark
        return []
