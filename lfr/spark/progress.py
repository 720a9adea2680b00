"""Progress of a long Spark action in the driver's log: tasks done, time elapsed, time left.

The jobs turn Spark's console progress bar off (it garbles logs), and embedding a large catalog is
one action of tens of minutes; ``with progress(spark, "embed books"):`` around the action logs every
``interval`` seconds how many tasks of the action's jobs are done. A task is one partition, so the
granularity is the partition count (``embed.rows_per_partition``).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Iterator

log = logging.getLogger(__name__)

GROUP_KEY = "spark.jobGroup.id"


def tasks_done(tracker, group: str) -> tuple[int, int]:
    """(completed, total) tasks over the stages of the jobs in ``group`` that Spark still reports."""
    done = total = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in (job.stageIds if job else ()):
            stage = tracker.getStageInfo(stage_id)
            if stage:
                done, total = done + stage.numCompletedTasks, total + stage.numTasks
    return done, total


def progress_line(what: str, done: int, total: int, elapsed: float) -> str:
    """``what: 12/40 tasks done (30%), 5.0 min elapsed, about 11.7 min left`` (no estimate before a task ends)."""
    line = f"{what}: {done}/{total} tasks done ({100.0 * done / max(total, 1):.0f}%), {elapsed / 60:.1f} min elapsed"
    if 0 < done < total:
        line += f", about {elapsed * (total - done) / done / 60:.1f} min left"
    return line


@contextlib.contextmanager
def progress(spark, what: str, interval: float = 60.0) -> Iterator[str]:
    """Log the progress of the Spark jobs started in this block every ``interval`` seconds (0: never).

    The block's jobs run in a job group of their own (the previous group is restored on exit), which
    is what the reporter thread looks up; yields the group id.
    """
    sc = spark.sparkContext
    group = f"lfr-progress-{uuid.uuid4().hex[:12]}"
    previous = sc.getLocalProperty(GROUP_KEY)
    sc.setLocalProperty(GROUP_KEY, group)
    stop, started = threading.Event(), time.time()

    def report() -> None:
        while not stop.wait(interval):
            try:
                done, total = tasks_done(sc.statusTracker(), group)
            except Exception as exc:          # a progress line is never worth failing the job
                log.debug("progress of %s unavailable: %s", what, exc)
                continue
            if total:
                log.info("%s", progress_line(what, done, total, time.time() - started))

    reporter = threading.Thread(target=report, name=f"progress: {what}", daemon=True)
    if interval and interval > 0:
        reporter.start()
    try:
        yield group
    finally:
        stop.set()
        sc.setLocalProperty(GROUP_KEY, previous)
