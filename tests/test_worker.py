"""lfr.worker: a worker's long-lived objects leave the per-task gc.collect() once (in a fresh process: the freeze
is process-wide)."""
import subprocess
import sys
from pathlib import Path

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
