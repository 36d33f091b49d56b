"""Fuzz of Scheduler resume (mark_done): random DAGs, a real earlier run (random
outcomes, maybe a stop) gives the recorded-done set; a resumed scheduler in a random
mode takes a random subset of it and runs with random events. Properties:
* a task of the resumed set is never dispatched;
* a task is counted done at most once, only with every parent done and its stage open;
* invariants (validate=True) hold after every event;
* at the end every resumed task that ended done was counted, n_resumed matches;
* no DONE task has a parent not DONE at any step;
* never stalls.
"""

from __future__ import annotations

import os
import random
import sys
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_scheduler_fuzz import make_wf, workers  # noqa: E402

from mpiwf.scheduler import DISPATCHED, DONE, Scheduler, check_invariants  # noqa: E402
from mpiwf.workflow import DEP_ALL  # noqa: E402


def parents(wf):
    par = [[] for _ in range(wf.ntasks)]
    for a, b, kind in wf.set_deps:
        A, B = wf.sets[a], wf.sets[b]
        for i, tb in enumerate(B.task_ids()):
            if kind == DEP_ALL:
                par[tb].extend(A.task_ids())
            else:
                par[tb].append(A.offset + i)
    for ta, tb in wf.task_edges:
        par[tb].append(ta)
    return par


def drive(S, rng, wf, ws, *, resumed=frozenset(), stop_p=0.0, add_p=0.0, fail_p=0.08,
          lost_p=0.01, failset_p=0.005, check=None):
    queued = {w: deque() for w in range(len(ws))}
    steps = 0
    while not S.finished:
        steps += 1
        assert steps < 50000, "no progress"
        S.now = steps
        for a, b, g in S.schedule_runs():
            for t in range(a, b):
                assert t not in resumed, ("recorded task dispatched", t)
            queued[g[0]].extend((t, S.attempts.get(t, 0)) for t in range(a, b))
        if check:
            check()
        live = [w for w in queued if queued[w]]
        if not live:
            if S.finished:
                break
            assert not S.running, "running but nothing queued"
            return "stall"
        if rng.random() < stop_p:
            S.cancel_all()
            for t in list(S.running):
                S.cancel_running(t)
            if check:
                check()
            return "stopped"
        if add_p and rng.random() < add_p and len(wf.sets) < 14:
            i = len(wf.sets)
            names = [x.name for x in wf.sets]
            n = rng.choice([1, 3, 10, 40, 100])
            after = [x for x in names if rng.random() < 0.3]
            same = [x for x in names if wf.sets[wf.by_name[x].sid].n == n and x not in after]
            after_each = [x for x in same if rng.random() < 0.5]
            wf.add_set(f"d{i}", n, "spin", (0.0,), duration=0.0, after=after,
                       after_each=after_each, retries=rng.choice([0, 1]))
            S.tasks_added()
            if check:
                check()
        w = rng.choice(live)
        q = queued[w]
        k = rng.randint(1, min(len(q), 30))
        msg = [q.popleft() for _ in range(k)]
        msg = [t for t, at in msg if t in S.running and S.attempts.get(t, 0) == at]
        r = rng.random()
        if r < lost_p:
            S.worker_lost(w)
            queued[w].clear()
            for sid in S.unplaceable():
                S.fail_set(sid)
            if check:
                check()
            continue
        if r < lost_p + failset_p:
            S.fail_set(rng.randrange(len(S.s_n)))
            if check:
                check()
        for t in msg:
            if t not in S.running:
                continue
            if rng.random() < fail_p:
                S.task_failed(t)
            else:
                S.task_done(t)
            if check:
                check()
    return "done"


def one(seed: int) -> str:
    rng = random.Random(seed)
    wf = make_wf(rng)
    ws = workers(rng)
    kw = dict(prefetch=rng.choice([0, 1, 4]), short_task=0.05, batch=rng.choice([0, 64]))
    try:
        S1 = Scheduler(wf, ws, window=rng.choice([0, 1, 2]), validate=False, **kw)
    except Exception:
        return "skip"
    if S1.unplaceable():
        return "skip"
    S1.start()
    res = drive(S1, rng, wf, ws, stop_p=rng.choice([0.0, 0.02, 0.1]), lost_p=0.0,
                failset_p=0.0)
    if res == "stall":
        return "skip"
    recorded = {t for t in range(S1.ntasks) if S1.state[t] == DONE}
    # maybe a second earlier run, resumed from the first (trace resumed several times)
    if rng.random() < 0.3:
        S1b = Scheduler(wf, ws, window=rng.choice([0, 1, 2]), validate=True, **kw)
        S1b.start()
        S1b.mark_done(recorded)
        drive(S1b, rng, wf, ws, resumed=frozenset(recorded), stop_p=0.05, lost_p=0.0,
              failset_p=0.0)
        recorded |= {t for t in range(S1b.ntasks) if S1b.state[t] == DONE}
    # resumed subset: some recorded tasks run again (their values are inputs)
    drop = rng.choice([0.0, 0.0, 0.1, 0.5])
    R = frozenset(t for t in recorded if rng.random() >= drop)
    par = parents(wf)
    window = rng.choice([0, 1, 2, 3])
    S = Scheduler(wf, ws, window=window, validate=True, **kw)
    counted: list[int] = []
    orig = S.task_done

    def wrapped(tid: int) -> None:
        if S.state[tid] == DISPATCHED and S.running.get(tid) == ():
            assert tid in R, ("counted a task not recorded", tid)
            assert tid not in counted, ("counted twice", tid)
            bad = [p for p in par[tid] if S.state[p] != DONE] if tid < len(par) else []
            assert not bad, ("counted with parents not done", tid, bad)
            if window:
                st = S.s_stage[S._sid(tid)]
                assert st < S.stage_lo + window, ("counted in a held stage", tid, st,
                                                  S.stage_lo)
            counted.append(tid)
        orig(tid)

    S.task_done = wrapped  # _drain_resume calls self.task_done

    def check() -> None:
        par2 = parents(wf) if wf.ntasks != len(par) else par
        for t in range(S.ntasks):
            if S.state[t] == DONE:
                bad = [p for p in par2[t] if S.state[p] != DONE]
                assert not bad, ("done with parent not done", t, bad)
        check_invariants(S)

    if rng.random() < 0.5:
        S.start()
        S.mark_done(R)
    else:  # mark before start (the scheduler should cope either way)
        S.mark_done(R)
        S.start()
    check()
    res = drive(S, rng, wf, ws, resumed=R, stop_p=rng.choice([0.0, 0.005]),
                add_p=rng.choice([0.0, 0.05]), check=check)
    assert res != "stall", "stalled"
    assert len(set(counted)) == len(counted) == S.n_resumed
    for t in R:
        if S.state[t] == DONE:
            assert t in counted, ("recorded done but not counted", t)
    if res == "done":
        assert S.finished
    return res


def test_resume_fuzz() -> None:
    """300 seeds (about 10 s); ``python tests/unit/test_resume_fuzz.py LO HI`` runs more."""
    out: dict[str, int] = {}
    for seed in range(300):
        r = one(seed)
        out[r] = out.get(r, 0) + 1
    assert set(out) <= {"done", "skip", "stopped"} and out.get("done", 0) > 50, out


if __name__ == "__main__":
    lo, hi = int(sys.argv[1]), int(sys.argv[2])
    out: dict[str, int] = {}
    for seed in range(lo, hi):
        try:
            r = one(seed)
        except AssertionError as e:
            print("seed", seed, "FAIL", repr(e)[:400])
            r = "fail"
        out[r] = out.get(r, 0) + 1
    print(out)
