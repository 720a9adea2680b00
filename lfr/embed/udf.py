"""Worker side of the embedding: the iterator pandas UDF and its per-worker model cache.

The UDF ``(title, description, genres) -> array<float>`` is modelled on
``pyspark.ml.functions.predict_batch_udf``: the model is loaded once per Python worker
process (``ModelCache``, keyed by ``model_version``; Spark reuses workers across tasks,
``spark.python.worker.reuse``), inputs arrive as Arrow batches
(``spark.sql.execution.arrow.maxRecordsPerBatch`` rows), the model runs on them in batches of
``batch_size`` rows, and the return type is typed (``array<float>``, float32, unit length).

Threads: a task owns ``spark.task.cpus`` cores, so torch gets exactly that many intra-op
threads (default 1). N tasks x 1 thread beats fewer tasks x more threads for this small
encoder (2 workers x 2 threads ran 40% slower than 4 x 1 on the same cores).

The artifact reaches the executors through ``lfr.embed.ship.ship_artifact`` (driver side);
``ArtifactRef.local_path`` finds it on the worker.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql.functions import pandas_udf

from lfr.embed.schema import EMBEDDING_TYPE
from lfr.embed.ship import ArtifactRef


class ModelCache:
    """Models loaded in this process, by ``model_version`` and the run's precision (the oldest
    evicted beyond ``max_models``).

    Why at most two: during a model change a worker may still serve a task of the old version;
    keeping more would hold hundreds of MB per Python worker for nothing."""

    def __init__(self, max_models: int = 2):
        self.max_models = max_models
        self.loads = 0                      # models loaded by this process (tests and logs)
        self._models: "OrderedDict[str, object]" = OrderedDict()
        self._lock = threading.Lock()

    def versions(self) -> list[str]:
        return [version for version, _ in self._models]

    def get(self, ref: ArtifactRef):
        """The model for ``ref``, loaded (and its manifest hashes verified) once per process."""
        with self._lock:
            key = (ref.model_version, ref.precision)
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            model = self._load(ref)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            self.loads += 1
            return model

    @staticmethod
    def _load(ref: ArtifactRef):
        from lfr.model import load

        path = ref.local_path()
        model = load(path, precision=ref.precision)   # the run's model.precision wins over the manifest's
        if model.model_version != ref.model_version:
            raise RuntimeError(f"model at {path} is version {model.model_version}, the job shipped {ref.model_version} "
                               "(the artifact changed while the job ran?)")
        return model


_CACHE = ModelCache()


def load_cached(ref: ArtifactRef):
    """The model for ``ref`` from this process's cache."""
    return _CACHE.get(ref)


def loaded_versions() -> list[str]:
    """``model_version``s held by this process's cache, oldest first."""
    return _CACHE.versions()


def _task_cpus() -> int:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    try:
        return max(1, int(ctx.cpus())) if ctx is not None else 1
    except Exception:
        return max(1, int((ctx and ctx.getLocalProperty("spark.task.cpus")) or 1))


def _none_if_na(values: pd.Series) -> list:
    return [v if isinstance(v, str) else None for v in values]


KILL_ONCE_ENV = "LFR_TEST_KILL_WORKER_ONCE"   # test-only fault hook (tests/test_cluster.py)


def _test_fault_hook() -> None:
    """Tests only: with ``spark.executorEnv.LFR_TEST_KILL_WORKER_ONCE=<marker file>`` the first Python
    worker to get here creates the marker and dies (``os._exit``), so a test sees a real mid-job
    worker loss and Spark's task retry. Unset (always, outside tests): nothing happens."""
    import os

    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(13)


def make_embed_udf(ref: ArtifactRef, batch_size: int, num_threads: int | None = None, domain: str | None = None):
    """The pandas UDF for the artifact ``ref``: call it on (title, description, genres) columns.

    ``domain`` ('movies' | 'books'): the catalog being embedded; a model with ``for_domain``
    (X-Cross) embeds each catalog with its own domain's adapter, LightFusionRec ignores it."""
    batch_size = int(batch_size)

    @pandas_udf(EMBEDDING_TYPE)
    def embed(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        import torch

        torch.set_num_threads(int(num_threads or _task_cpus()))
        model = None
        for titles, descriptions, genres in batches:
            if model is None:  # lazily: an empty partition loads nothing
                model = load_cached(ref)
                _test_fault_hook()
                if domain is not None and hasattr(model, "for_domain"):
                    model = model.for_domain(domain)
            vecs = model.embed(_none_if_na(titles), _none_if_na(descriptions), genres.tolist(), batch_size=batch_size)
            yield pd.Series(list(np.asarray(vecs, dtype=np.float32)), index=titles.index)

    return embed


def embed_column(ref: ArtifactRef, title: Column | str = "title", description: Column | str = "description",
                 genres: Column | str = "genres", *, batch_size: int, num_threads: int | None = None,
                 domain: str | None = None) -> Column:
    """``array<float>`` embedding column of the item columns (the UDF applied); ``domain``: the
    catalog ('movies' | 'books'), needed by X-Cross artifacts."""
    return make_embed_udf(ref, batch_size, num_threads, domain)(title, description, genres)
