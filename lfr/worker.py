"""Python-worker process hygiene shared by the embedding and scoring UDFs (imports nothing from lfr).

Why: pyspark's daemon runs ``gc.collect()`` in a reused Python worker after every task. Once a worker has
imported torch (and transformers for the encoder), that walks hundreds of thousands of objects after every
task, although they live as long as the process (measured: docs/BENCHMARKS.md). :func:`freeze_long_lived`
moves what exists at that point (the imports, a loaded model) into the collector's permanent generation, once
per process, so the per-task collections walk only what tasks create. Frozen objects are still freed by
reference counting; only cycles among them would outlive their use, and a worker's modules and cached models
live until it exits anyway.
"""
from __future__ import annotations

import gc

_frozen = False


def freeze_long_lived() -> bool:
    """Collect once, then freeze every tracked object, the first time a process calls it; True if it froze
    now. Call it where a worker has just made its long-lived objects (heavy imports, a model load)."""
    global _frozen
    if _frozen:
        return False
    gc.collect()
    gc.freeze()
    _frozen = True
    return True
