"""lfr.spark.progress (the progress lines of a long action) and the embed job's bounded partitions."""
import logging
import time
from types import SimpleNamespace

from lfr.embed.pipeline import embed_partitions
from lfr.spark.progress import GROUP_KEY, progress, progress_line, running_stages


def test_embed_partitions_bound_the_rows_of_a_task():
    spark = SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=2))
    assert embed_partitions(spark, 200_000, 64, None, 5000) == 40          # a 200k-row catalog: 40 tasks
    assert embed_partitions(spark, 666, 64, None, 5000) == 2               # small: the cluster's parallelism
    assert embed_partitions(spark, 200_000, 64, None, None) == 2           # no bound: parallelism only
    assert embed_partitions(spark, 200_000, 64, 7, 5000) == 7              # an explicit count wins
    assert embed_partitions(spark, 100, 64, None, 10) == 2                 # never more than one per batch
    assert embed_partitions(spark, 0, 64, None, 5000) == 1


def test_progress_line_estimates_the_time_left_once_a_task_is_done():
    assert progress_line("embed books", 0, 40, 90) == "embed books: 0/40 tasks done (0%), 1.5 min elapsed"
    assert progress_line("embed books", 10, 40, 600) == \
        "embed books: 10/40 tasks done (25%), 10.0 min elapsed, about 30.0 min left"
    assert progress_line("x", 40, 40, 60).endswith("(100%), 1.0 min elapsed")
    # the rate is the running stage's own: 10 tasks in its 5 minutes (the action ran 10) -> 15 min left
    assert progress_line("x", 10, 40, 600, stage_seconds=300).endswith("10.0 min elapsed, about 15.0 min left")


def test_progress_reports_the_running_stage_and_restores_the_job_group(spark, caplog):
    """A two-stage action (6 map tasks, then 3 reduce tasks): each line counts the running stage's tasks
    only, never a sum over stages; afterwards nothing runs and the outer job group is back."""
    from operator import add

    sc = spark.sparkContext
    sc.setLocalProperty(GROUP_KEY, "outer")

    def slow(rows):
        time.sleep(0.5)
        return rows
    try:
        with caplog.at_level(logging.INFO, logger="lfr.spark.progress"):
            with progress(spark, "demo action", interval=0.2) as group:
                assert sc.getLocalProperty(GROUP_KEY) == group
                counts = (sc.parallelize(range(60), 6).mapPartitions(slow).map(lambda x: (x % 3, 1))
                            .reduceByKey(add, 3).mapPartitions(slow).collectAsMap())
        assert counts == {0: 20, 1: 20, 2: 20}
        assert sc.getLocalProperty(GROUP_KEY) == "outer"
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo action: ")]
        totals = {int(line.split("/")[1].split()[0]) for line in lines}
        assert lines and totals <= {6, 3} and 6 in totals, lines
        assert running_stages(sc.statusTracker(), group) == ((), 0, 0)
        assert running_stages(sc.statusTracker(), "no-such-group") == ((), 0, 0)
    finally:
        sc.setLocalProperty(GROUP_KEY, None)
