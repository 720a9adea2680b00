"""Python-worker process hygiene shared by the embedding and scoring UDFs (imports nothing from lfr).

Why: pyspark's daemon runs ``gc.collect()`` in a reused Python worker after every task. Once a worker has
imported torch (and transformers for the encoder), that walks hundreds of thousands of objects after every
task, although they live as long as the process (measured: docs/BENCHMARKS.md). :func:`freeze_long_lived`
moves what exists at that point (the imports, a loaded model) into the collector's permanent generation, once
per process, so the per-task collections walk only what tasks create. Frozen objects are still freed by
reference counting; only cycles among them would outlive their use, and a worker's modules and cached models
live until it exits anyway.

The same reuse lets a scoring worker's resident memory creep up task after task: each block pair allocates
tens of MiB of score chunks and Arrow buffers, glibc serves them from its heap once its dynamic mmap threshold
has risen, and the freed pages stay mapped, scattered between live ones. :func:`release_free_memory` hands
them back after each task (measured: docs/BENCHMARKS.md), so a worker's memory follows the block sizes, not the
number of tasks it ran.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache
from typing import Callable, Optional

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


@lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the operating system (``malloc_trim(0)``: every whole free page,
    not only the heap's top); False where the C library cannot. It walks the heap: call it between tasks,
    not inside a task's loops."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
