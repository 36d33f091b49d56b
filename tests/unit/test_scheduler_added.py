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
