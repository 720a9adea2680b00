"""lfr.phases: one INFO line per phase with its seconds, totals per phase, failures marked."""
import logging
import time

import pytest

from lfr.phases import Phases


def test_phases_log_one_line_each_and_sum_repeats(caplog):
    caplog.set_level(logging.INFO, logger="lfr")
    p = Phases("job")
    with p("read"):
        time.sleep(0.02)
    with p("read"):
        pass
    p.lap("plan")
    with pytest.raises(ValueError), p("write"):
        raise ValueError("boom")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" phase ")[1].split()[0] for line in lines] == ["read", "read", "plan", "write"]
    assert lines[-1].endswith("(failed)") and all(line.startswith("job: phase ") for line in lines)
    assert list(p.seconds) == ["read", "plan", "write"]
    assert p.seconds["read"] >= 0.02 and p.seconds["plan"] < 0.02
    assert p.summary().split(", ")[1].startswith("plan ") and len(p.summary().split(", ")) == 3
