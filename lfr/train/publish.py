"""Publish a trained model to ``paths.model_dir`` without ever exposing a half-written artifact.

Why: embedding jobs may load ``model_dir`` at any time, and a failed training
run must leave the previous model usable. The artifact is therefore written to
a temporary sibling directory and swapped in with renames:

    <parent>/.<name>.tmp-<id>   <- model.save(...) (a failure deletes it; the old model is untouched)
    <name>  -> <parent>/.<name>.old-<id>      (rename, only if a previous model exists)
    .<name>.tmp-<id> -> <name>                (rename; on failure the old one is renamed back)
    rm -r .<name>.old-<id>

On a local filesystem each rename is atomic; between the two renames (a
few microseconds) ``model_dir`` does not exist, so a concurrent reader gets a
clear "artifact not found" error rather than a mixed model. URIs (s3a://,
hdfs://; ``lfr.config.is_uri``) are written with Spark's Hadoop FileSystem the same way;
on object stores a rename is a copy, so there the swap is not atomic (the
manifest check in ``lfr.model.load`` still refuses a partial copy).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping

from lfr.config import is_uri, resolve_path
from lfr.model import LightFusionModel

log = logging.getLogger(__name__)


def publish_model(model: LightFusionModel, model_dir: str, extra_manifest: Mapping[str, Any] | None = None,
                  spark: Any = None) -> str:
    """Save ``model`` to ``model_dir`` via a temp dir + rename; returns the model_version."""
    if is_uri(model_dir):
        if spark is None:
            raise ValueError(f"model_dir {model_dir} is a URI: publishing it needs the SparkSession")
        return _publish_hadoop(model, model_dir, extra_manifest, spark)
    target = Path(resolve_path(model_dir))   # file:// is a local path
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    old = target.parent / f".{target.name}.old-{tag}"
    try:
        version = model.save(tmp, extra_manifest=extra_manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    had_old = target.exists()
    if had_old:
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if had_old:
            os.rename(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
    log.info("published model %s at %s", version, target)
    return version


def _publish_hadoop(model: LightFusionModel, uri: str, extra_manifest: Mapping[str, Any] | None, spark: Any) -> str:
    jvm = spark._jvm  # type: ignore[attr-defined]
    hpath = jvm.org.apache.hadoop.fs.Path
    target = hpath(uri)
    fs = target.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    tag = uuid.uuid4().hex[:8]
    tmp = hpath(target.getParent(), f".{target.getName()}.tmp-{tag}")
    old = hpath(target.getParent(), f".{target.getName()}.old-{tag}")
    with tempfile.TemporaryDirectory(prefix="lfr-model-") as local:
        version = model.save(Path(local) / "model", extra_manifest=extra_manifest)
        try:
            fs.copyFromLocalFile(False, True, hpath(Path(local, "model").as_uri()), tmp)
        except BaseException:
            fs.delete(tmp, True)
            raise
    had_old = fs.exists(target)
    if had_old and not fs.rename(target, old):
        fs.delete(tmp, True)
        raise OSError(f"could not move the previous model {uri} aside")
    if not fs.rename(tmp, target):
        if had_old:
            fs.rename(old, target)
        fs.delete(tmp, True)
        raise OSError(f"could not move the new model into {uri}")
    if had_old:
        fs.delete(old, True)
    log.info("published model %s at %s", version, uri)
    return version
