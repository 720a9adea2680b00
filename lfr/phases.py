"""Seconds per phase of a job, one INFO line as each phase ends.

Why: a small job's time is mostly fixed costs (Spark start-up, Delta log reads, catalog calls,
Python workers); a line per phase shows a user where it goes without the Spark UI, and the
totals go into the job's result for benchmarks.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

log = logging.getLogger("lfr")


class Phases:
    """``with phases("check"): ...`` times a phase; ``seconds`` maps phase -> seconds (summed when repeated)."""

    def __init__(self, job: str, logger: logging.Logger | None = None):
        self.job = job
        self.seconds: dict[str, float] = {}
        self._log = logger or log
        self._last = time.perf_counter()     # end of the last phase (``lap``)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        failed = True
        try:
            yield
            failed = False
        finally:
            dt = time.perf_counter() - t0
            self._record(name, dt, " (failed)" if failed else "")

    def lap(self, name: str) -> None:
        """Record the time since the last phase ended (or the timer started) as phase ``name``."""
        self._record(name, time.perf_counter() - self._last)

    def _record(self, name: str, dt: float, note: str = "") -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self._last = time.perf_counter()
        self._log.info("%s: phase %s %.1fs%s", self.job, name, dt, note)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}

    def summary(self) -> str:
        """``check 1.2s, blocks 3.4s, ...`` in the order the phases ran."""
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
