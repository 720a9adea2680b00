"""Progress of a long Spark action in the driver's log: tasks done, time elapsed, time left.

The jobs turn Spark's console progress bar off (it garbles logs), and embedding a large catalog is
one action of tens of minutes; ``with progress(spark, "embed books"):`` around the action logs every
``interval`` seconds how many tasks of its running stage are done and the time left at that
stage's rate. A task is one partition, so the granularity is the partition count
(``embed.rows_per_partition``).
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


def running_stages(tracker, group: str) -> tuple[tuple[int, ...], int, int]:
    """(ids, completed tasks, tasks) of the RUNNING stages of the jobs in ``group``.

    Only running stages count: an action's stages run one after another with very different task
    counts (a fast read stage of many tasks, the long stage, a one-task final count), so a sum over
    all of them would make the share and the time left meaningless; skipped stages never run.
    """
    stages: set[int] = set()
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        stages.update(job.stageIds if job else ())
    running = tuple(sorted(stages & set(tracker.getActiveStageIds())))
    done = total = 0
    for stage_id in running:
        stage = tracker.getStageInfo(stage_id)
        if stage:
            done, total = done + stage.numCompletedTasks, total + stage.numTasks
    return running, done, total


def progress_line(what: str, done: int, total: int, elapsed: float, stage_seconds: float | None = None) -> str:
    """``what: 12/40 tasks done (30%), 5.0 min elapsed, about 11.7 min left`` for the running stage(s).

    The time left extrapolates the stage's own rate (``stage_seconds`` since it was first seen
    running; default ``elapsed``); no estimate before one of its tasks is done.
    """
    line = f"{what}: {done}/{total} tasks done ({100.0 * done / max(total, 1):.0f}%), {elapsed / 60:.1f} min elapsed"
    if 0 < done < total:
        rate_seconds = elapsed if stage_seconds is None else stage_seconds
        line += f", about {rate_seconds * (total - done) / done / 60:.1f} min left"
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
        first_seen: dict[tuple, float] = {}
        while not stop.wait(interval):
            try:
                running, done, total = running_stages(sc.statusTracker(), group)
            except Exception as exc:          # a progress line is never worth failing the job
                log.debug("progress of %s unavailable: %s", what, exc)
                continue
            if total:
                now = time.time()
                since = first_seen.setdefault(running, now - interval)   # it started within the last interval
                log.info("%s", progress_line(what, done, total, now - started, now - since))

    reporter = threading.Thread(target=report, name=f"progress: {what}", daemon=True)
    if interval and interval > 0:
        reporter.start()
    try:
        yield group
    finally:
        stop.set()
        sc.setLocalProperty(GROUP_KEY, previous)
