"""lfr.worker: a worker's long-lived objects leave the per-task gc.collect() once (in a fresh process: the freeze
is process-wide)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc
import torch  # the imports a scoring worker makes
from lfr.worker import freeze_long_lived

first, again = freeze_long_lived(), freeze_long_lived()
task = [[i] for i in range(1000)]          # what a task creates after the freeze is still collected
print(first, again, gc.get_freeze_count() > 100_000, len(gc.get_objects()) < 5000)   # torch: some 300,000
"""


def test_the_first_call_freezes_what_exists_and_later_calls_do_nothing():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT)}).stdout.split()
    assert out == ["True", "False", "True", "True"]


TRIM_PROBE = """
import os
import numpy as np
from lfr.worker import release_free_memory

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20

big = np.ones(8 << 20, np.uint8); del big               # freeing a mapped 8 MiB block raises glibc's mmap threshold
chunks = [np.ones(4 << 20, np.uint8) for _ in range(100)]  # so these 400 MiB come from the heap, like a task's chunks
last = chunks[-1]                                      # the heap's top stays in use: no automatic trim
del chunks
before = rss_mib()
print(release_free_memory(), before, rss_mib())
"""


def test_release_free_memory_returns_a_tasks_freed_heap_to_the_os():
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs Linux /proc")
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT)}).stdout.split()
    released, before, after = out[0], int(out[1]), int(out[2])
    assert released == "True"
    assert before >= 300 and after < before - 250, (before, after)   # the freed 396 MiB left the process
