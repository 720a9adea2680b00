"""Getting the model artifact to the Python workers, once, and loading it once per worker.

Driver side -- ``ship_artifact(spark, model_dir) -> ArtifactRef``:

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
  a tar named ``lfr-model-<model_version>.tar`` is content-addressed, so a retrained model in
  the same session is a different file and a repeated call is a no-op.

A remote URI (``s3a://``, ``hdfs://``, ...) is added with ``addFile(recursive=True)``:
executors fetch the folder straight from storage. ``mode="path"`` (local masters, or a
filesystem every worker mounts) ships nothing and loads from the given path.

Worker side -- ``load_cached(ref)``: a module-level cache keyed by ``model_version`` (at
most two models: the old one is evicted when a new version arrives). With
``spark.python.worker.reuse=true`` (Spark's default) a Python worker process serves many
tasks, so the model is loaded (and its manifest hashes verified) once per worker process.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHIP_MODES = ("archive", "path")
_URI_PREFIXES = ("s3a://", "s3://", "hdfs://", "abfss://", "gs://", "dbfs:", "wasbs://")


class ModelArtifactMissing(FileNotFoundError):
    """No trained model artifact where the embedding job looks for it."""


@dataclass(frozen=True)
class ArtifactRef:
    """What a task needs to find the artifact: small and picklable (it travels with the UDF)."""

    model_version: str
    mode: str          # "archive" (SparkFiles name of the unpacked tar) | "file" (SparkFiles folder) | "path"
    location: str      # SparkFiles name or filesystem path

    def local_path(self) -> str:
        if self.mode == "path":
            return self.location
        from pyspark import SparkFiles

        return SparkFiles.get(self.location)


def is_uri(path: str) -> bool:
    return str(path).startswith(_URI_PREFIXES)


def read_model_version(model_dir: str) -> str:
    """``model_version`` from the artifact's manifest; a clear error when there is no artifact."""
    manifest = Path(model_dir) / MANIFEST
    if not manifest.is_file():
        raise ModelArtifactMissing(
            f"no trained model artifact at {model_dir} (no {MANIFEST}). Train one first: "
            f"spark-submit jobs/train.py [--model-dir {model_dir}], or pass --model-dir to an existing artifact.")
    try:
        version = json.loads(manifest.read_text(encoding="utf-8"))["model_version"]
    except (ValueError, KeyError) as exc:
        raise ModelArtifactMissing(f"{manifest} is not a LightFusionRec manifest ({exc}); retrain with jobs/train.py") from exc
    return str(version)


_shipped: dict[tuple[int, str, str], ArtifactRef] = {}
_ship_lock = threading.Lock()
_tmp_dirs: list[str] = []


def _cleanup() -> None:
    for d in _tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def ship_artifact(spark, model_dir: str, mode: str = "archive") -> ArtifactRef:
    """Make the artifact at ``model_dir`` available to every executor; see the module doc."""
    if mode not in SHIP_MODES:
        raise ValueError(f"unknown ship mode {mode!r} (have: {', '.join(SHIP_MODES)})")
    sc = spark.sparkContext
    if is_uri(model_dir):
        # The manifest is read through Spark (the driver may not mount the bucket).
        text = "\n".join(r.value for r in spark.read.text(model_dir.rstrip("/") + "/" + MANIFEST, wholetext=True).collect())
        version = str(json.loads(text)["model_version"])
    else:
        version = read_model_version(model_dir)
    key = (id(sc), model_dir, mode)
    with _ship_lock:
        ref = _shipped.get(key)
        if ref is not None and ref.model_version == version:
            return ref
        if mode == "path":
            ref = ArtifactRef(version, "path", model_dir)
        elif is_uri(model_dir):
            sc.addFile(model_dir, recursive=True)
            ref = ArtifactRef(version, "file", os.path.basename(model_dir.rstrip("/")))
        else:
            name = f"lfr-model-{version}"
            tmp = tempfile.mkdtemp(prefix="lfr-ship-")
            _tmp_dirs.append(tmp)
            tar_path = os.path.join(tmp, name + ".tar")
            with tarfile.open(tar_path, "w") as tar:   # uncompressed: weights do not compress
                for entry in sorted(os.listdir(model_dir)):
                    tar.add(os.path.join(model_dir, entry), arcname=entry)
            if not any(a.endswith(f"#{name}") or a.endswith(name + ".tar") for a in _list_archives(sc)):
                sc.addArchive(f"{tar_path}#{name}")
            ref = ArtifactRef(version, "archive", name)
            log.info("shipping model %s to executors as archive %s (%.1f MB)", version, name, os.path.getsize(tar_path) / 1e6)
        _shipped[key] = ref
        return ref


def _list_archives(sc) -> list[str]:
    try:
        return list(sc.listArchives)
    except Exception:  # older PySpark
        return []


# ------------------------------------------------------------------ worker side
_MODELS: "OrderedDict[str, object]" = OrderedDict()
_MAX_MODELS = 2
_load_lock = threading.Lock()
LOADS = {"count": 0}   # how many times this process loaded a model (tests and logs)


def load_cached(ref: ArtifactRef):
    """The model for ``ref``, loaded once per process (verified against its manifest)."""
    with _load_lock:
        model = _MODELS.get(ref.model_version)
        if model is not None:
            _MODELS.move_to_end(ref.model_version)
            return model
        from lfr.model import load

        path = ref.local_path()
        model = load(path)
        if model.model_version != ref.model_version:
            raise RuntimeError(f"model at {path} is version {model.model_version}, the job shipped {ref.model_version} "
                               "(the artifact changed while the job ran?)")
        _MODELS[ref.model_version] = model
        while len(_MODELS) > _MAX_MODELS:
            _MODELS.popitem(last=False)
        LOADS["count"] += 1
        return model
