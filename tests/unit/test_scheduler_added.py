"""Sets added at run time re-rank work that is already queued (critical-path order)."""

from __future__ import annotations

from mpiwf import Scheduler, Workflow
from mpiwf.resources import uniform_workers


def test_added_child_raises_the_priority_of_a_queued_parent() -> None:
    wf = Workflow("grow")
    wf.add_set("a", 2, "noop", duration=1.0)
    s = Scheduler(wf, uniform_workers(1, 1), validate=True)
    s.start()  # a is queued with bottom level 1
    wf.add_set("b", 2, "noop", duration=5.0)                  # independent, level 5
    wf.add_set("c", 1, "noop", duration=10.0, after=["a"])   # a's bottom level: 11
    s.tasks_added()
    first = s.schedule()
    assert [wf.set_of(t).name for t, _g in first] == ["a"]


def test_lookahead_ranks_a_set_by_the_work_still_to_come() -> None:
    wf = Workflow("look")
    wf.add_set("b", 2, "noop", duration=2.0)
    wf.add_set("a", 2, "noop", duration=1.0)
    wf.add_set("a2", 1, "noop", duration=1.0, after=["a"])
    assert wf.bottom_levels() == [2.0, 2.0, 1.0]
    wf.sets[2].lookahead = 5.0   # a driver will hang 5 s of work below a2
    assert wf.bottom_levels() == [2.0, 7.0, 6.0]
    s = Scheduler(wf, uniform_workers(1, 1), validate=True)
    s.start()
    assert [wf.set_of(t).name for t, _g in s.schedule()] == ["a"]
