"""Spark's Python daemon (``pyspark.daemon``) for the tests' shared session, with the heavy modules the
UDFs use imported once, before it forks its Python workers (``spark.python.daemon.module``).

Each forked worker otherwise imports torch itself (about 2 s of CPU); a run of the suite starts a few dozen
workers. The workers run the same ``pyspark.worker`` code on the same inputs; only the imports are shared.

``gc.freeze()`` after the imports: a reused worker runs ``gc.collect()`` after every task (pyspark's daemon),
and without the freeze each collection walks every object torch, pandas, pyarrow and scipy created in the
daemon (most of the workers' CPU in the Spark-heavy modules, py-spy). Frozen objects are never collected,
which is what they are: modules for the life of the process.
"""
import gc

import numpy  # noqa: F401
import pandas  # noqa: F401
import pyarrow  # noqa: F401
import scipy.sparse  # noqa: F401
import torch  # noqa: F401
from pyspark import daemon

if __name__ == "__main__":
    gc.freeze()
    daemon.manager()
