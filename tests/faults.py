"""Test-side model loaders for the embedding UDF (``ArtifactRef.loader`` / ``spark.lfr.model.loader``).

Why a separate, self-contained module: the executors import it by name (``faults:<function>``)
after the test ships this one file (``addPyFile`` / ``spark-submit --py-files tests/faults.py``);
the library's own code path has no test hooks. It imports nothing from ``tests``.

* ``kill_worker_once``: the real model, but the first Python worker to load it (marker file named
  by ``LFR_TEST_KILL_WORKER_ONCE`` in the executor's environment) dies -- a real mid-job worker loss.
* ``onnx_without_torch``: the real model on ``model.runtime: onnx``, after checking that this Python
  worker cannot import torch, transformers or fasttext (the packed executor environment); it writes
  the worker's interpreter into the folder named by ``LFR_TEST_EXECUTOR_MARKS``.
* ``short_output`` / ``wrong_dimension`` / ``nan_vector`` / ``zero_vector``: a fake model with the
  artifact's ``model_version`` and dimension whose output breaks the UDF's contract for the items
  titled ``BAD_TITLE`` (the whole batch for ``short_output``).
"""
from __future__ import annotations

import os

import numpy as np

KILL_ONCE_ENV = "LFR_TEST_KILL_WORKER_ONCE"
EXECUTOR_MARKS_ENV = "LFR_TEST_EXECUTOR_MARKS"
BAD_TITLE = "BAD"


def kill_worker_once(path, precision=None, runtime=None, quantize=None):
    """``lfr.model.load`` (on the onnx runtime: ``onnx_without_torch``), then (once per marker file, across
    processes) ``os._exit`` of this worker."""
    if runtime == "onnx":
        model = onnx_without_torch(path, precision=precision, runtime=runtime, quantize=quantize)
    else:
        from lfr.model import load

        model = load(path, precision=precision)
    marker = os.environ.get(KILL_ONCE_ENV)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return model
        os._exit(13)
    return model


def onnx_without_torch(path, precision=None, runtime=None, quantize=None):
    """``lfr.model.load`` on the onnx path, in a worker that must not be able to import torch & co."""
    import importlib
    import sys

    for name in ("torch", "transformers", "fasttext"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        raise RuntimeError(f"{name} is importable in this executor's Python ({sys.executable})")
    from lfr.model import load

    model = load(path, precision=precision, runtime=runtime, quantize=quantize)
    marks = os.environ.get(EXECUTOR_MARKS_ENV)
    if marks:
        with open(os.path.join(marks, f"worker-{os.getpid()}.txt"), "w", encoding="utf-8") as fh:
            fh.write(f"{sys.executable}\n{type(model).__name__}\n")
    return model


class FakeModel:
    """Unit vectors of the artifact's dimension (row i: a one-hot at i mod dim), then ``fault``."""

    def __init__(self, path, fault: str):
        from lfr.model.artifact import read_manifest

        manifest = read_manifest(path)
        self.model_version, self.output_dim = manifest["model_version"], int(manifest["dims"]["output"])
        self.fault = fault

    def embed(self, titles, descriptions, genres, batch_size=64):
        n, dim = len(descriptions), self.output_dim
        vecs = np.zeros((n, dim), dtype=np.float32)
        vecs[np.arange(n), np.arange(n) % dim] = 1.0
        bad = [i for i, t in enumerate(titles) if t == BAD_TITLE]
        if self.fault == "short" and bad:
            return vecs[:-1]
        if self.fault == "dim":
            return [v[:-1] if i in bad else v for i, v in enumerate(vecs)]
        if self.fault in ("nan", "zero"):
            vecs[bad] = np.nan if self.fault == "nan" else 0.0
        return vecs


def short_output(path, precision=None):
    return FakeModel(path, "short")


def wrong_dimension(path, precision=None):
    return FakeModel(path, "dim")


def nan_vector(path, precision=None):
    return FakeModel(path, "nan")


def zero_vector(path, precision=None):
    return FakeModel(path, "zero")


def healthy(path, precision=None):
    return FakeModel(path, "none")
