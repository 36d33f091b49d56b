#!/bin/bash
# flux: -N 2
# flux: -t 60m
# flux: --job-name=mpiwf
# flux: --output=mpiwf-{{id}}.out
#
# mpiwf under the Flux resource manager (e.g. LLNL systems that run Flux as
# the system scheduler, or a Flux instance started inside another batch job).
#
# ========================= batch header (edit) ==============================
# The four lines right after the shebang are the header: `flux batch` reads
# submission directives only as one group at the top of the file (RFC 36), so
# keep them together there and keep explanations below them. Add a queue or
# bank as further directive lines in that group (-q NAME, -B NAME) if your
# site needs them.
#
# Submit:        flux batch jobscripts/flux.sh
#                (options on the command line override the directives,
#                e.g. flux batch -N 4 -t 2h jobscripts/flux.sh)
# Interactive:   flux alloc -N 2, then: bash jobscripts/flux.sh
# ============================================================================
#
# Launcher documentation used:
#   Flux flux-run(1): -N/--nodes, -n/--ntasks, -c/--cores-per-task,
#     -g/--gpus-per-task, -x/--exclusive, -o/--setopt (shell options).
#   Flux flux-batch(1) and "Submission directives" (RFC 36).
#   Flux flux-shell(1) options: cpu-affinity=per-task, gpu-affinity=per-task
#     (sets CUDA_VISIBLE_DEVICES to each task's share of the job's GPUs;
#     tasks share GPUs only when there are more tasks than GPUs), pmi=LIST.
set -euo pipefail

# ========================= variables (edit) =================================
# Workflow description passed to `mpiwf run`.
SPEC="${SPEC:-path/to/workflow-spec}"
# Scheduling mode: async | sequential | doa=K
MODE="${MODE:-async}"
# Trace file written by the run and read by `mpiwf analyze`.
TRACE="${TRACE:-mpiwf-${FLUX_JOB_ID:-local}.h5}"
# Nodes: the size of the enclosing Flux instance (one broker per node in a
# batch job or allocation).
NODES="${NODES:-$(flux getattr size)}"
# Ranks per node: set to the number of cores per node you want to use.
# Rank 0 is the master, every other rank a worker.
RANKS_PER_NODE="${RANKS_PER_NODE:-32}"
# Cores per rank.
CORES_PER_RANK="${CORES_PER_RANK:-1}"
# GPUs per rank: 0 = whole nodes are allocated (--exclusive) and the node's
# GPUs are shared out in blocks among its ranks, one GPU per rank; N > 0 =
# each rank asks for N GPUs of its own (then RANKS_PER_NODE may not exceed
# GPUs per node / N).
GPUS_PER_RANK="${GPUS_PER_RANK:-0}"
# PMI service for the MPI library, empty = Flux's default (simple PMI, fine
# for MPICH-based MPIs). Open MPI builds need "pmix" (flux-pmix plugin);
# some sites document other values, e.g. "cray-pals" for Cray MPICH.
FLUX_PMI="${FLUX_PMI:-}"
# Virtual environment holding mpiwf, mpi4py, h5py and (for GPU kernels) CuPy.
# See docs/clusters.md.
VENV="${VENV:-$HOME/venvs/mpiwf}"
PYTHON="${PYTHON:-$VENV/bin/python}"
# Log level of mpiwf (a Python logging level name).
export MPIWF_LOG_LEVEL="${MPIWF_LOG_LEVEL:-INFO}"

# ========================= environment ======================================
# Module lines are examples only: load what mpi4py was built against.
set +u  # module and venv activation scripts are not written for `set -u`
# module load gcc mvapich2
# shellcheck source=/dev/null
source "$VENV/bin/activate"
set -u

if [[ ! -f "$SPEC" ]]; then
    echo "flux.sh: SPEC='$SPEC' is not a file; edit SPEC at the top" >&2
    exit 2
fi

# ========================= launch ===========================================
# One rank per CORES_PER_RANK cores, each bound to its own cores
# (cpu-affinity=per-task); GPUs handed out per task (gpu-affinity=per-task).
NTOTAL=$(( NODES * RANKS_PER_NODE ))
FLUX_RUN_ARGS=( -N "$NODES" -n "$NTOTAL" -c "$CORES_PER_RANK"
                -o cpu-affinity=per-task -o gpu-affinity=per-task )
if (( GPUS_PER_RANK > 0 )); then
    FLUX_RUN_ARGS+=( -g "$GPUS_PER_RANK" )
else
    FLUX_RUN_ARGS+=( --exclusive )
fi
if [[ -n "$FLUX_PMI" ]]; then
    FLUX_RUN_ARGS+=( -o "pmi=$FLUX_PMI" )
fi
flux run "${FLUX_RUN_ARGS[@]}" \
    "$PYTHON" -m mpiwf run "$SPEC" --mode "$MODE" --trace "$TRACE"

# ========================= analyse ==========================================
# Serial, on the first node of the instance; no launcher needed.
"$PYTHON" -m mpiwf analyze "$TRACE"
