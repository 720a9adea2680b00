"""Worker side of the embedding: the iterator pandas UDF and its per-worker model cache.

The UDF ``(title, description, genres) -> array<float>`` is modelled on
``pyspark.ml.functions.predict_batch_udf``: the model is loaded once per Python worker
process (``ModelCache``, keyed by ``model_version``; Spark reuses workers across tasks,
``spark.python.worker.reuse``), inputs arrive as Arrow batches
(``spark.sql.execution.arrow.maxRecordsPerBatch`` rows), the model runs on them in batches of
``batch_size`` rows, and the return type is typed (``array<float>``, float32, unit length).

Threads: a task owns ``spark.task.cpus`` cores, so torch (or ONNX Runtime, ``model.runtime:
onnx``) gets exactly that many intra-op threads (default 1). N tasks x 1 thread beats fewer
tasks x more threads for this small encoder (2 workers x 2 threads ran 40% slower than 4 x 1 on the same cores).

Output validation, as ``predict_batch_udf`` validates its predictions: every batch's vectors are
checked before Spark gets them -- one vector per input row, each of the artifact's dimension
(``ArtifactRef.dim``, from its manifest), finite and non-zero. A model that breaks this (a
fault in the encoder, fp16 overflow, an empty text pooled to nothing) fails the task with an
``EmbeddingOutputError`` naming the item ids, instead of writing vectors that rank nothing or
everything. That is why the UDF takes the id column.

The artifact reaches the executors through ``lfr.embed.ship.ship_artifact`` (driver side);
``ArtifactRef.local_path`` finds it on the worker and ``ArtifactRef.loader`` (``module:function``,
default ``lfr.model:load``) loads it: the one place where tests plug in fake or failing models.
"""
from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql.functions import pandas_udf

from lfr.embed.schema import EMBEDDING_TYPE
from lfr.embed.ship import ArtifactRef
from lfr.errors import UsageError
from lfr.worker import freeze_long_lived


class ModelCache:
    """Models loaded in this process, by ``model_version``, the run's precision and the loader (the
    oldest evicted beyond ``max_models``).

    Why at most two: during a model change a worker may still serve a task of the old version;
    keeping more would hold hundreds of MB per Python worker for nothing."""

    def __init__(self, max_models: int = 2):
        self.max_models = max_models
        self.loads = 0                      # models loaded by this process (tests and logs)
        self._models: "OrderedDict[str, object]" = OrderedDict()
        self._lock = threading.Lock()

    def versions(self) -> list[str]:
        return [key[0] for key in self._models]

    def get(self, ref: ArtifactRef):
        """The model for ``ref``, loaded (and its manifest hashes verified) once per process."""
        with self._lock:
            key = (ref.model_version, ref.precision, ref.runtime, ref.quantize, ref.loader)
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            model = self._load(ref)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            self.loads += 1
            freeze_long_lived()             # the first model and its imports: out of every task's gc.collect()
            return model

    @staticmethod
    def _load(ref: ArtifactRef):
        load = resolve_loader(ref.loader)
        path = ref.local_path()
        # the run's model.precision wins over the manifest's; runtime/quantize only off the default path, so a
        # loader written for torch (a test's fake, a fault-injecting wrapper) keeps its signature
        extra = {"runtime": ref.runtime, "quantize": ref.quantize} if ref.runtime != "torch" else {}
        model = load(path, precision=ref.precision, **extra)
        if model.model_version != ref.model_version:
            raise RuntimeError(f"model at {path} is version {model.model_version}, the job shipped {ref.model_version} "
                               "(the artifact changed while the job ran?)")
        return model


def resolve_loader(spec: str) -> Callable:
    """The function a ``"module:function"`` loader names, imported in this process; a clear error
    when this worker cannot import it (its module was not shipped with ``--py-files``/``addPyFile``)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"model loader {spec!r}: cannot import {module_name} on this worker ({exc}); "
                           "ship its module to the executors (--py-files / addPyFile)") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RuntimeError(f"model loader {spec!r}: {module_name} has no function {attr}")
    return fn


_CACHE = ModelCache()


def load_cached(ref: ArtifactRef):
    """The model for ``ref`` from this process's cache."""
    return _CACHE.get(ref)


def _task_cpus() -> int:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    try:
        return max(1, int(ctx.cpus())) if ctx is not None else 1
    except Exception:
        return max(1, int((ctx and ctx.getLocalProperty("spark.task.cpus")) or 1))


def _none_if_na(values: pd.Series) -> list:
    return [v if isinstance(v, str) else None for v in values]


class EmbeddingOutputError(RuntimeError):
    """A batch's embeddings break the UDF's contract (count, dimension, finite, non-zero): the task fails."""


def _items(ids: Sequence, rows) -> str:
    """The ids of ``rows`` (positions in the batch) for an error message: the first five and a count."""
    rows = list(rows)
    shown = ", ".join(repr(ids[i]) for i in rows[:5])
    if len(rows) == 1:
        return f"item {shown}"
    return f"items {shown}" + (f" (+{len(rows) - 5} more)" if len(rows) > 5 else "")


def _as_matrix(vecs, ids: Sequence, dim: int, version: str) -> np.ndarray:
    """``vecs`` as float32 ``(len(ids), dim)``, or an ``EmbeddingOutputError`` naming the items it
    cannot be: a count other than the batch's, or a row of another shape or not numbers."""
    fail = f"embedding output check failed (model {version})"
    try:
        count = len(vecs)
    except TypeError:
        count = None
    if count != len(ids):
        raise EmbeddingOutputError(f"{fail}: {count} vectors for a batch of {len(ids)} rows "
                                   f"({_items(ids, range(len(ids)))}); rows out must equal rows in")
    if isinstance(vecs, np.ndarray) and vecs.ndim == 2 and vecs.shape[1] == dim:
        return vecs.astype(np.float32, copy=False)
    out = np.empty((len(ids), dim), dtype=np.float32)
    for i, row in enumerate(vecs):
        try:
            row = np.asarray(row, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EmbeddingOutputError(f"{fail}: {_items(ids, [i])}: the vector is not numbers ({exc})") from exc
        if row.shape != (dim,):
            raise EmbeddingOutputError(f"{fail}: {_items(ids, [i])}: a vector of shape {row.shape}, the "
                                       f"artifact's dimension is {dim}")
        out[i] = row
    return out


def checked_vectors(vecs, ids: Sequence, dim: int, version: str) -> np.ndarray:
    """The batch's embeddings as float32 ``(rows, dim)`` after the checks of the module doc (why:
    a NaN or all-zero vector written to the table would silently drop or scramble recommendations)."""
    ids = list(ids)
    mat = _as_matrix(vecs, ids, int(dim), version)
    fail = f"embedding output check failed (model {version})"
    bad = np.flatnonzero(~np.isfinite(mat).all(axis=1))
    if bad.size:
        raise EmbeddingOutputError(f"{fail}: {_items(ids, bad)}: a vector with NaN or infinite values")
    zero = np.flatnonzero(~(mat != 0).any(axis=1))
    if zero.size:
        raise EmbeddingOutputError(f"{fail}: {_items(ids, zero)}: an all-zero vector")
    return mat


def _model_for(ref: ArtifactRef, domain: str | None):
    """This worker's model for ``ref`` (cached), viewed for ``domain`` when it has per-domain parts."""
    model = load_cached(ref)
    if domain is not None and hasattr(model, "for_domain"):
        model = model.for_domain(domain)
    return model


def make_embed_udf(ref: ArtifactRef, batch_size: int, num_threads: int | None = None, domain: str | None = None):
    """The pandas UDF for the artifact ``ref``: call it on (title, description, genres, id) columns;
    the ids name the items in a failed output check (``checked_vectors``).

    ``domain`` ('movies' | 'books'): the catalog being embedded; a model with ``for_domain``
    (X-Cross) embeds each catalog with its own domain's adapter, LightFusionRec ignores it."""
    batch_size = int(batch_size)

    @pandas_udf(EMBEDDING_TYPE)
    def embed(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        threads = int(num_threads or _task_cpus())
        if ref.runtime == "torch":  # the onnx path imports no torch: its model takes the threads itself
            import torch

            torch.set_num_threads(threads)
        model, dim = None, None
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) != 4:
                raise UsageError("the embedding UDF takes 4 columns: title, description, genres, id")
            titles, descriptions, genres, ids = batch
            if model is None:  # lazily: an empty partition loads nothing
                model = _model_for(ref, domain)
                dim = ref.dim or int(model.output_dim)
                if hasattr(model, "set_num_threads"):
                    model.set_num_threads(threads)
            vecs = model.embed(_none_if_na(titles), _none_if_na(descriptions), genres.tolist(), batch_size=batch_size)
            yield pd.Series(list(checked_vectors(vecs, ids.tolist(), dim, ref.model_version)), index=titles.index)

    return embed


def embed_column(ref: ArtifactRef, title: Column | str = "title", description: Column | str = "description",
                 genres: Column | str = "genres", *, ids: Column | str = "id", batch_size: int,
                 num_threads: int | None = None, domain: str | None = None) -> Column:
    """The embedding of each row's item, as an ``array<float>`` column (the pandas UDF applied).

    Like ``pyspark.ml.functions.predict_batch_udf``: the model is loaded once per Python worker
    (``ModelCache``), runs on Arrow batches ``batch_size`` rows at a time, and every batch's output
    is checked (one vector per row, the artifact's dimension, finite, non-zero) before Spark gets it.

    Parameters
    ----------
    ref : ArtifactRef
        The shipped model artifact (``lfr.embed.ship.ship_artifact``); its ``precision`` and
        ``loader`` are applied on the executors.
    title, description : Column or str, optional
        The item's title and text (string columns; nulls allowed). Default ``"title"``, ``"description"``.
    genres : Column or str, optional
        The item's genre labels (``array<string>``; null or empty allowed). Default ``"genres"``.
    ids : Column or str, keyword-only
        The item id column, named by a failed output check. Default ``"id"``.
    batch_size : int, keyword-only
        Rows per model forward pass (``embed.batch_size``).
    num_threads : int, optional
        Torch threads per task (default: the task's ``spark.task.cpus``).
    domain : str, optional
        The catalog, ``"movies"`` or ``"books"``: a model with per-domain parts (X-Cross) embeds each
        catalog with its own; LightFusionRec ignores it.

    Returns
    -------
    Column
        ``array<float>`` (``lfr.embed.schema.EMBEDDING_TYPE``), L2-normalised rows of the artifact's
        dimension. A model output that breaks the checks fails the task with ``EmbeddingOutputError``
        naming the item ids.

    Example
    -------
    >>> from lfr.embed import embed_column, ship_artifact
    >>> ref = ship_artifact(spark, "work/models/lightfusionrec", mode="path")    # doctest: +SKIP
    >>> books = spark.read.format("delta").load("work/warehouse/books")         # doctest: +SKIP
    >>> vectors = embed_column(ref, batch_size=64, domain="books").alias("embedding")  # doctest: +SKIP
    >>> books.select("id", vectors).show(2)                                      # doctest: +SKIP
    +-----------------+--------------------+
    |               id|           embedding|
    +-----------------+--------------------+
    |goodreads:1000001|[0.0123, -0.0456,...|
    |goodreads:1000002|[-0.0311, 0.0207,...|
    +-----------------+--------------------+
    """
    return make_embed_udf(ref, batch_size, num_threads, domain)(title, description, genres, ids)
