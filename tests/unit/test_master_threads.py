"""Master and worker logic over the in-process transport (no mpiexec, no mpi4py)."""

from __future__ import annotations

import sys

import numpy as np

from mpiwf import Config, Workflow, local
from mpiwf.master import TaskEvent
from mpiwf.resources import uniform_workers
from mpiwf.trace import TraceWriter, load


def run_threads(wf: Workflow, nworkers: int = 3, cfg: Config | None = None, trace=None,
                callbacks=()):
    return local.run_threads(wf, cfg, nworkers=nworkers, trace=trace, callbacks=callbacks)


def test_many_short_tasks_with_batching() -> None:
    wf = Workflow()
    wf.add_set("a", 500)
    wf.add_set("b", 500, after_each=["a"])
    s, m = run_threads(wf, cfg=Config(progress_interval=0, prefetch=8, validate=False))
    assert s.ok and s.done == 1000
    assert sum(b["tasks"] for b in m.byes.values()) == 1000


def test_callbacks_grow_the_workflow(tmp_path) -> None:
    wf = Workflow("grow")
    wf.add_set("gen0", 2, "echo", (0,))
    seen: list[str] = []

    def cb(ev: TaskEvent) -> None:
        seen.append(ev.name)
        k = int(ev.set[3:])
        if ev.ok and k < 3 and f"gen{k + 1}" not in wf.by_name:
            wf.add_set(f"gen{k + 1}", 2, "echo", (k + 1,), after=[ev.set])

    path = str(tmp_path / "g.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2))
    s, _m = run_threads(wf, 2, trace=tw, callbacks=[cb])
    tw.close()
    assert s.ok and s.tasks == 8 and len(seen) == 8
    tr = load(path)
    assert [x["name"] for x in tr.sets] == ["gen0", "gen1", "gen2", "gen3"]
    assert len(tr.tasks) == 8 and tr.set_edges.shape == (3, 3)
    t = tr.tasks
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for a, b in zip(order, order[1:]):
        assert np.all(t[a] <= t[b])


def test_added_set_with_inputs_gets_them_or_is_refused() -> None:
    """A set added by a callback gets its parents' values when rank 0 still has them
    (its parents are new, or still running); when they finished before it was added
    and no set wanted their values then, it is refused (cancelled, with a failure
    saying why), never run on ``None`` in place of them."""
    wf = Workflow("dyn")
    wf.add_set("a", 3, "echo", (7,))
    wf.add_set("b", 1, "noop", after=["a"])
    got: dict[str, list] = {}

    def cb(ev: TaskEvent) -> None:
        got.setdefault(ev.set, []).append(ev.value)
        if ev.set == "b" and ev.ok and "late" not in wf.by_name:
            wf.add_set("late", 1, "echo", after=["a"], inputs=True)  # a's values are gone
            wf.add_set("x", 2, "echo", ("x",))
            wf.add_set("y", 1, "echo", after=["x"], inputs=True)  # x is new: kept

    s, m = run_threads(wf, 2, callbacks=[cb])
    assert (s.done, s.cancelled, s.tasks) == (7, 1, 8) and not s.ok
    assert "late" not in got
    assert [f[:2] for f in m.failures] == [("late", "InputsNotKept")]
    assert "set(s) a" in m.failures[0][2]
    (y,) = got["y"]
    assert sorted(v["task"] for v in y["inputs"]) == ["x[0]", "x[1]"]


def test_resumed_run_refuses_an_added_set_whose_inputs_came_from_the_trace() -> None:
    """On a resume, tasks counted done from the trace have no value here even when a
    set takes their values (``d`` below, itself recorded done): a set added later
    with inputs from them is refused, not run on None."""
    wf = Workflow("dyn")
    wf.add_set("a", 3, "echo", (7,))
    wf.add_set("d", 1, "echo", after=["a"], inputs=True)
    wf.add_set("b", 1, "noop")
    got: dict[str, list] = {}

    def cb(ev: TaskEvent) -> None:
        got.setdefault(ev.set, []).append(ev.value)
        if ev.set == "b" and "late" not in wf.by_name:
            wf.add_set("late", 1, "echo", after=["a"], inputs=True)

    def setup(m) -> None:
        m.skip_done = {0, 1, 2, 3}  # a and d recorded done in an earlier run

    s, m = local.run_threads(wf, Config(progress_interval=0, validate=True), nworkers=2,
                             callbacks=[cb], setup=setup)
    assert "late" not in got and [f[:2] for f in m.failures] == [("late", "InputsNotKept")]
    assert (s.done, s.cancelled) == (5, 1)


def test_pure_layers_do_not_import_mpi4py() -> None:
    assert "mpi4py" not in sys.modules or True  # other tests may import it; check below
    import subprocess

    code = ("import sys; import mpiwf, mpiwf.scheduler, mpiwf.simulate, mpiwf.trace, "
            "mpiwf.analysis, mpiwf.workflow, mpiwf.master, mpiwf.worker, mpiwf.spec; "
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr
