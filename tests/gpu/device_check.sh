#!/usr/bin/env bash
# All GPU checks of mpiwf in one call, on a machine with a GPU, system MPI and CuPy:
#   tests/gpu/device_check.sh            (from the repository root; no .venv needed)
# Steps: GPU tests (tests/gpu), mpiwf doctor with 4 workers sharing one GPU, a run of
# GPU/CPU/exec tasks on those 4 ranks (trace checked), the whole MPI tier at 4 ranks, GPU kernel timings against the card's measured GEMM peak, and the dispatch
# benchmark on all cores (NP_DISPATCH, default 16; DISPATCH_ARGS, e.g. --repeat 5;
# SKIP_DISPATCH=1 skips it), and the trace's cost with a core to spare for its writer
# thread (NP_SPARE ranks, default 15; SKIP_SPARE=1 skips it). A short table
# is printed last; the exit status is 0 only when no step failed.
# Environment: PY (default python3), MPIEXEC (default mpiexec), OUT (output folder,
# default a new temporary one), MIX_SPEC (the run's spec, default
# tests/gpu/gpu_mix.json), BENCH_ARGS (e.g. --quick for a dry run). Open MPI as root
# is allowed here. A dry run without a GPU (its GPU steps fail with mpiwf's own line,
# the MPI tier and both benchmarks run), e.g. against Debian's Open MPI on 2 cores:
#   OMPI_MCA_rmaps_base_oversubscribe=1 PY=.venv/bin/python MPIEXEC=/usr/bin/mpiexec \
#   NP_DISPATCH=2 NP_SPARE=2 SPARE_TASKS=20000 SPARE_ROUNDS=2 DISPATCH_ARGS=--quick \
#   BENCH_ARGS=--quick tests/gpu/device_check.sh
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
PY=${PY:-python3}
MPIEXEC=${MPIEXEC:-mpiexec}
MIX_SPEC=${MIX_SPEC:-tests/gpu/gpu_mix.json}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PYTHONDONTWRITEBYTECODE=1 MPIR_CVAR_CH4_PROGRESS_THROTTLE=1
TABLE="$OUT/table.txt"
OPENMPI=0
"$MPIEXEC" --version 2>&1 | grep -q "Open MPI" && OPENMPI=1
: > "$TABLE"
FAILED=0

row() {  # step, status, detail
    printf '%s|%s|%s\n' "$1" "$2" "$3" >> "$TABLE"
    [ "$2" = FAIL ] && FAILED=1
    echo "== $1: $2 $3"
}

first_line() {  # mpiwf's own line of a failed step's log (not the launcher's banner):
    # its error line, else its first line, else the log's last
    grep -a -m1 -E '^(mpiwf|gpu_bench)[^:]*:.*(error|FAILED|needs)' "$1" \
        || grep -a -m1 -E '^(mpiwf|gpu_bench)[^:]*:' "$1" || tail -n 1 "$1"
}

step() {  # name, seconds, command...: run bounded, log to $OUT/name.log
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    return $rc
}

echo "== device"
(nvidia-smi -L || true) 2>&1 | head -4
"$PY" -c "import sys, numpy, mpi4py; print(sys.version.split()[0], 'numpy', numpy.__version__,
'mpi4py', mpi4py.__version__)" 2>&1
HAVE_PYTEST=0
"$PY" -c "import pytest" 2>/dev/null && HAVE_PYTEST=1

# 1. GPU tests (pytest when installed, else the same plain functions one by one)
if [ $HAVE_PYTEST = 1 ]; then
    if step gpu-tests 300 "$PY" -m pytest -q -p no:cacheprovider -W default -rs tests/gpu; then
        if grep -q skipped "$OUT/gpu-tests.log"; then
            row "GPU tests" FAIL "skipped: $(grep -m1 -o 'needs CuPy.*' "$OUT/gpu-tests.log")"
        else
            row "GPU tests" PASS "$(grep -Eo '[0-9]+ passed' "$OUT/gpu-tests.log" | tail -1)"
        fi
    else
        row "GPU tests" FAIL "$(grep -Eo '[0-9]+ (failed|passed|error)[^=]*' \
            "$OUT/gpu-tests.log" | tail -1)"
    fi
else
    if step gpu-tests 300 "$PY" -c "
import sys, traceback, tests.gpu.test_gpu_kernels as m
from tests.gpu.conftest import gpu_available
why = gpu_available()
if why: sys.exit('no GPU: ' + why)
bad = 0
names = [n for n in dir(m) if n.startswith('test_')]
for n in names:
    try:
        getattr(m, n)(); print('PASS', n)
    except Exception:
        bad += 1; print('FAIL', n); traceback.print_exc()
print(len(names) - bad, 'passed', bad, 'failed')
sys.exit(1 if bad else 0)"; then
        row "GPU tests" PASS "$(grep -Eo '[0-9]+ passed' "$OUT/gpu-tests.log") (no pytest)"
    else
        row "GPU tests" FAIL "$(tail -1 "$OUT/gpu-tests.log")"
    fi
fi

# 2. doctor: 5 ranks = master + 4 workers sharing GPU 0
if step doctor 120 "$MPIEXEC" -n 5 "$PY" -m mpiwf doctor --layout tests/gpu/share1.json; then
    n=$(grep -c 'gpu 0 (real)' "$OUT/doctor.log")
    if [ "$n" = 4 ] && grep -q '4 GPU workers share 1 GPU' "$OUT/doctor.log"; then
        row "doctor, 4 ranks on 1 GPU" PASS "4 workers bound to real GPU 0, sharing warned"
    else
        row "doctor, 4 ranks on 1 GPU" FAIL "$n workers on real GPU 0 (want 4)"
    fi
else
    row "doctor, 4 ranks on 1 GPU" FAIL "$(first_line "$OUT/doctor.log")"
fi

# 3. a run: GPU kernels, CPU kernels and executables on 4 ranks sharing the GPU
if step run-shared 300 "$MPIEXEC" -n 5 "$PY" -m mpiwf run "$MIX_SPEC" \
        --layout tests/gpu/share1.json --trace "$OUT/gpu-mix.h5" --rundir "$OUT/run" --json
then
    if detail=$("$PY" - "$OUT/gpu-mix.h5" "$OUT/run" "$MIX_SPEC" <<'EOF'
import glob, json, sys
import numpy as np
from mpiwf.trace import load
tr = load(sys.argv[1])
t = tr.tasks
assert len(t) == 32 and not tr.errors, (len(t), tr.errors)
assert (t["status"] == 4).all(), t["status"]
gpu_ranks = {w["rank"] for w in tr.workers if w["gpus"] and not w["virtual_gpu"]}
assert len(gpu_ranks) == 4, tr.workers
used = {int(x["worker"]) for x in t if x["gpus"]}
assert len(used) >= 2, used
outs = [open(p).read() for p in glob.glob(sys.argv[2] + "/tasks/env/*/stdout")]
assert len(outs) == 4 and all("CUDA_VISIBLE_DEVICES=0 " in o for o in outs), outs
sets = [s["name"] for s in tr.sets]
gemm = t[t["set"] == sets.index("gemm")]
span = float(gemm["ended"].max() - gemm["started"].min())
g = next(s for s in json.load(open(sys.argv[3]))["sets"] if s["name"] == "gemm")
n, rep = g["args"]
agg = g["n"] * rep * 2 * n ** 3 / span / 1e12
print(f"32 tasks done on {len(used)} GPU ranks; {g['n']}x{rep} GEMM {n}^3 on 4 shared "
      f"ranks: {agg:.1f} TFLOP/s aggregate")
EOF
    ); then
        row "run, 4 ranks share GPU" PASS "$detail"
    else
        row "run, 4 ranks share GPU" FAIL "trace check failed: $(echo "$detail" | tail -1)"
    fi
else
    row "run, 4 ranks share GPU" FAIL "$(first_line "$OUT/run-shared.log")"
fi

# 4. the whole MPI tier at 4 ranks under this MPI (multi-rank tasks, binding, doctor,
#    executables, reliability), every rank reporting: a worker rank's failure shows
#    (Open MPI: each rank's report in its own file, so a failure's report survives)
if [ $HAVE_PYTEST = 1 ]; then
    RANKS_OUT=""
    [ $OPENMPI = 1 ] && RANKS_OUT="--output-filename $OUT/mpi-ranks"
    step mpi-tests 150 env MPIWF_TEST_ALL_RANKS=1 "$MPIEXEC" -n 4 $RANKS_OUT "$PY" -m mpi4py \
        -m pytest -q -p no:cacheprovider -W default -rfE --tb=short tests/mpi
    rc=$?
    if [ -n "$RANKS_OUT" ]; then
        for f in "$OUT"/mpi-ranks/*/rank.*/stdout; do
            [ -f "$f" ] && { echo "-- $f"; cat "$f"; } >> "$OUT/mpi-tests.log"
        done
        grep -aE '^(E |FAILED|ERROR)|passed|failed' "$OUT/mpi-tests.log" | head -30
    fi
    if [ $rc = 0 ]; then
        row "tests/mpi x4, every rank" PASS "$(grep -aEo '[0-9]+ passed' "$OUT/mpi-tests.log" \
            | sort | uniq -c | awk '{printf "%s ranks: %s %s; ", $1, $2, $3}')"
    else
        row "tests/mpi x4, every rank" FAIL "$(grep -aE '^(FAILED|ERROR)' "$OUT/mpi-tests.log" \
            | head -3 | tr '\n' ' ')"
    fi
else
    row "tests/mpi x4, every rank" SKIP "pytest not installed"
fi

# 5. kernel timings against the measured GEMM peak
if step bench 300 "$PY" tests/gpu/gpu_bench.py "$OUT/gpu-bench.json" "${BENCH_ARGS:-}"; then
    row "kernel timings" PASS "$OUT/gpu-bench.json"
else
    row "kernel timings" FAIL "$(first_line "$OUT/bench.log")"
fi

# 6. dispatch throughput on all cores of the machine (benchmarks/README.md records it)
NP_DISPATCH=${NP_DISPATCH:-16}
if [ "${SKIP_DISPATCH:-0}" != 1 ]; then
    if step dispatch 420 "$MPIEXEC" -n "$NP_DISPATCH" --bind-to core "$PY" \
            benchmarks/dispatch.py ${DISPATCH_ARGS:-}; then
        row "dispatch x$NP_DISPATCH" PASS "$(grep -aE '^(mpiwf_null_median|ratio_vs_futures|METG_us|trace_overhead|trace_cpu_overhead|dag_vs_null)=' \
            "$OUT/dispatch.log" | cut -d' ' -f1 | tr '\n' ' ')"
    else
        row "dispatch x$NP_DISPATCH" FAIL "see dispatch.log"
    fi
fi

# 7. the trace's cost where rank 0 has a core to spare (NP_SPARE ranks, default 15 on
#    16 cores, not bound): SPARE_ROUNDS rounds of 10^6 null tasks (SPARE_TASKS) with no
#    trace, the trace written by rank 0's loop and by its writer thread, side by side
#    in one job (benchmarks/ab_versions.py; benchmarks/README.md)
NP_SPARE=${NP_SPARE:-15}
SPARE_TASKS=${SPARE_TASKS:-1000000}
SPARE_ROUNDS=${SPARE_ROUNDS:-5}
if [ "${SKIP_SPARE:-0}" != 1 ]; then
    XENV=""
    [ $OPENMPI = 1 ] && XENV="--bind-to none"
    # one job, the three settings rotated round by round (benchmarks/ab_versions.py)
    if step spare 300 "$MPIEXEC" -n "$NP_SPARE" $XENV "$PY" benchmarks/ab_versions.py \
            off=.:off loop=.:on:MPIWF_TRACE_THREAD=off thread=.:on:MPIWF_TRACE_THREAD=on \
            --tasks "$SPARE_TASKS" --rounds "$SPARE_ROUNDS"; then
        row "trace cost, spare core x$NP_SPARE" PASS "$(grep -aE '^(off|loop|thread) ' \
            "$OUT/spare.log" | awk '{printf "%s %s/s cost %s rounds %s; ", $1, $3, $6, $9}')"
    else
        row "trace cost, spare core x$NP_SPARE" FAIL "see spare.log"
    fi
fi

echo
echo "== timings"
if [ -s "$OUT/gpu-bench.json" ]; then
    "$PY" - "$OUT/gpu-bench.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'kernel':<26} {'size':<18} {'seconds':>8} {'TFLOP/s':>8} {'of peak':>8}  other")
for r in rows:
    other = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                      if k not in ("kernel", "size", "seconds", "tflops", "of_peak"))
    sec = f"{r['seconds']:.4f}" if "seconds" in r else "-"
    tf = f"{r['tflops']:.2f}" if "tflops" in r else "-"
    op = f"{r['of_peak']:.2f}" if "of_peak" in r else "-"
    print(f"{r['kernel']:<26} {r['size']:<18} {sec:>8} {tf:>8} {op:>8}  {other}")
EOF
fi
echo
echo "== summary (outputs in $OUT)"
while IFS='|' read -r name status detail; do
    printf '%-30s %-5s %s\n' "$name" "$status" "$detail"
done < "$TABLE"
exit $FAILED
