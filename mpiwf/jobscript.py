"""Render a batch job script for one system whose rank layout fits a workflow.

Pure: reads nothing but its arguments (the caller loads the workflow), imports no
mpi4py. :func:`plan` picks the layout (ranks per node, cores per rank, GPU binding)
and checks the workflow fits it; :func:`render` fills the system's templates. The
launch lines follow the static scripts in ``jobscripts/``, which cite the same
launcher documentation; every flag used here appears there too.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence

from .errors import SpecError
from .resources import MAX_NODES
from .workflow import Workflow, check_fits


@dataclasses.dataclass(frozen=True)
class System:
    """What a system's nodes hold and how its jobs are launched.

    Attributes:
        name: the ``--system`` name.
        title: one line for the script's first comment.
        scheduler: ``lsf``, ``slurm``, ``pbs`` or ``flux``.
        cores: usable cores per node (one rank per core by default).
        gpus: GPUs (GCDs on Frontier) per node that ranks are bound to.
        multiple: ranks per node must be a multiple of this (equal shares of GPUs).
        fixed: node shape is fixed (``--cores-per-node``/``--gpus-per-node`` refused).
        docs: launcher documentation the template follows (cited in the script).
    """

    name: str
    title: str
    scheduler: str
    cores: int
    gpus: int
    multiple: int
    fixed: bool
    docs: tuple[str, ...]


SYSTEMS: dict[str, System] = {s.name: s for s in (
    System("summit", "OLCF Summit (IBM AC922: 42 usable cores + 6 V100 per node, LSF + jsrun)",
           "lsf", 42, 6, 6, True, (
               "OLCF Summit User Guide, 'Job Launcher (jsrun)': -n, -r, -a, -c, -g, -b, -d.",
               "OLCF jsrun Quick Start Guide: --bind packed:<k>, -d packed.",
               "OLCF 'RAPIDS on Summit': --smpiargs=\"-disable_gpu_hooks\".",
               "IBM Spectrum LSF bsub: -P, -J, -o, -e, -W [hour:]minute, -nnodes, "
               "-alloc_flags, -q.")),
    System("frontier", "OLCF Frontier (HPE Cray EX: 56 usable cores + 8 MI250X GCDs per node,"
           " Slurm)", "slurm", 56, 8, 8, True, (
               "OLCF Frontier User Guide, 'Mapping multiple MPI ranks to a single GPU',",
               "  Example 8: srun -c1 --ntasks-per-gpu=7 --gpu-bind=closest "
               "--distribution=*:block.",
               "Slurm sbatch(1)/srun(1): -A, -J, -o, -t, -p, -N, -n, --cpus-per-task.")),
    System("perlmutter", "NERSC Perlmutter GPU nodes (64 cores + 4 A100 per node, Slurm)",
           "slurm", 64, 4, 4, True, (
               "NERSC 'Running Jobs', GPU affinity: --gpu-bind=single:<n>, -c 2*floor(64/n)"
               " with --cpu-bind=cores.",
               "Slurm sbatch(1)/srun(1): -A, -C, -q, -t, -N, -n, -J, -o, --gpus-per-node, "
               "--ntasks-per-node,",
               "  --cpus-per-task.")),
    System("polaris", "ALCF Polaris (32 cores + 4 A100 per node, PBS Pro + Cray PALS mpiexec)",
           "pbs", 32, 4, 1, True, (
               "ALCF Polaris 'Running Jobs': qsub -N, -A, -q, -j, -l select=<n>:system=polaris,",
               "  place=, walltime=, filesystems=;",
               "  mpiexec -n, -ppn, --depth, --cpu-bind depth.",
               "ALCF 'Using GPUs on Polaris Compute Nodes': set_affinity_gpu_polaris.sh,",
               "  MPICH_GPU_SUPPORT_ENABLED.")),
    System("aurora", "ALCF Aurora (102 usable cores + 6 Intel PVC per node, PBS Pro + Cray"
           " PALS mpiexec)", "pbs", 102, 6, 2, True, (
               "ALCF 'Running Jobs on Aurora': qsub -N, -A, -q, -k, -l select=, place=, "
               "walltime=,",
               "  filesystems=; mpiexec -n/-ppn,",
               "  --cpu-bind=list:<a>:<b>:... (cores 0 and 52 are reserved),",
               "  ZE_AFFINITY_MASK per rank (set_affinity_gpu_aurora.sh), MPIR_CVAR_ENABLE_GPU.")),
    System("flux", "the Flux resource manager (flux batch / flux run)", "flux", 32, 0, 1, False, (
               "Flux flux-run(1): -N, -n, -c, --exclusive, -o cpu-affinity=per-task,",
               "  -o gpu-affinity=per-task; flux-batch(1), submission directives (RFC 36):",
               "  -N, -t <minutes>m, --job-name, --output, -q, -B.")),
    System("slurm", "a Slurm cluster", "slurm", 32, 0, 1, False, (
               "Slurm sbatch(1)/srun(1): --nodes, --ntasks, --ntasks-per-node, "
               "--cpus-per-task,",
               "  --cpu-bind=cores, --gpus-per-node, --gpu-bind=single:<n>, --time, "
               "--account,",
               "  --partition, --job-name, --output, --exclusive.")),
    System("pbs", "a PBS Professional / OpenPBS cluster (MPICH Hydra mpiexec)", "pbs", 32, 0, 1,
           False, (
               "PBS Professional User's Guide: qsub -N, -A, -q, -j, "
               "-l select=<n>:ncpus=:mpiprocs=:ngpus=,",
               "  place=, walltime=.",
               "MPICH 'Using the Hydra Process Manager': mpiexec -n, -ppn, -f <hostfile>;",
               "  -bind-to core{:<n>} as listed by Hydra's `mpiexec -bind-to -help`.")),
)}

#: Variable holding the job id, by scheduler (used in the default trace name).
JOB_ID_VAR = {"lsf": "LSB_JOBID", "slurm": "SLURM_JOB_ID", "pbs": "PBS_JOBID",
              "flux": "FLUX_JOB_ID"}

#: How the script is submitted, by scheduler.
SUBMIT = {"lsf": "bsub", "slurm": "sbatch", "pbs": "qsub", "flux": "flux batch"}



@dataclasses.dataclass(frozen=True)
class Layout:
    """Ranks of one job.

    Attributes:
        nodes: nodes of the job.
        ranks_per_node: MPI ranks per node (rank 0, on node 0, is the master).
        cores_per_rank: cores each rank is bound to.
        gpus_per_node: GPUs the launcher binds ranks to (0: none).
    """

    nodes: int
    ranks_per_node: int
    cores_per_rank: int
    gpus_per_node: int

    @property
    def ranks(self) -> int:
        """Total MPI ranks."""
        return self.nodes * self.ranks_per_node

    @property
    def workers(self) -> int:
        """Worker ranks (rank 0 runs the tasks itself in a 1-rank job)."""
        return max(1, self.ranks - 1)

    def capacity(self) -> list[tuple[int, int, int]]:
        """Per node ``(workers, cores, gpus)``, as :func:`mpiwf.workflow.check_fits` reads it."""
        out = []
        for node in range(self.nodes):
            w = self.ranks_per_node - (1 if node == 0 and self.ranks > 1 else 0)
            out.append((w, w * self.cores_per_rank, min(self.gpus_per_node, w)))
        return out


def parse_walltime(text: str) -> int:
    """Minutes of an ``HH:MM`` walltime.

    Raises:
        SpecError: not ``HH:MM`` with minutes below 60, or zero.
    """
    m = re.fullmatch(r"(\d{1,4}):(\d{2})", text.strip())
    if not m or int(m.group(2)) >= 60:
        raise SpecError("--walltime", f"expected HH:MM (e.g. 01:30), got {text!r}")
    minutes = 60 * int(m.group(1)) + int(m.group(2))
    if minutes < 1:
        raise SpecError("--walltime", "must be at least 00:01")
    return minutes


def plan(wf: Workflow, system: str, nodes: int, ranks_per_node: int | None = None,
         cores_per_node: int | None = None, gpus_per_node: int | None = None) -> Layout:
    """Choose the rank layout of a job on ``system`` and check the workflow fits it.

    One rank per usable core by default; on GPU systems ranks share the node's GPUs
    in equal blocks, each rank bound to one GPU, so a task asking for ``g`` GPUs
    finds ``g`` ranks bound to distinct GPUs on one node.

    Args:
        wf: the workflow (structure already checked by the loader).
        system: a key of :data:`SYSTEMS`.
        nodes: nodes of the job.
        ranks_per_node: override of the default (one rank per usable core).
        cores_per_node: cores per node (generic systems only).
        gpus_per_node: GPUs per node (generic systems only).

    Returns:
        The layout.

    Raises:
        SpecError: unknown system, bad counts, or a task set that cannot fit.
    """
    if system not in SYSTEMS:
        raise SpecError("--system", f"unknown system {system!r} (one of {', '.join(SYSTEMS)})")
    sysd = SYSTEMS[system]
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise SpecError("--nodes", f"must be a whole number from 1 to {MAX_NODES}, got "
                        f"{nodes!r}")
    if sysd.fixed and (cores_per_node is not None or gpus_per_node is not None):
        raise SpecError("--cores-per-node", f"{system} nodes have a fixed shape "
                        f"({sysd.cores} cores, {sysd.gpus} GPUs); only slurm, pbs and flux "
                        "take --cores-per-node/--gpus-per-node")
    cores = sysd.cores if cores_per_node is None else cores_per_node
    gpus = sysd.gpus if gpus_per_node is None else gpus_per_node
    if cores < 1:
        raise SpecError("--cores-per-node", f"must be >= 1, got {cores}")
    if gpus < 0:
        raise SpecError("--gpus-per-node", f"must be >= 0, got {gpus}")
    rpn = cores if ranks_per_node is None else ranks_per_node
    if rpn < 1 or rpn > cores:
        raise SpecError("--ranks-per-node", f"must be between 1 and {cores} (one rank per "
                        f"usable core on {system}), got {rpn}")
    if rpn % sysd.multiple:
        raise SpecError("--ranks-per-node", f"must be a multiple of {sysd.multiple} on {system} "
                        f"(equal shares of its {sysd.gpus} GPUs), got {rpn}")
    need_gpu = [ts for ts in wf.sets if ts.gpus > 0]
    if need_gpu and gpus == 0:
        ts = max(need_gpu, key=lambda t: t.gpus)
        raise SpecError(f"sets.{ts.name}.gpus", f"tasks ask for {ts.gpus} GPU(s) but {system} "
                        "is rendered without GPUs (pass --gpus-per-node)")
    for ts in need_gpu:
        if ts.gpus > gpus:
            raise SpecError(f"sets.{ts.name}.gpus", f"tasks ask for {ts.gpus} GPUs but a "
                            f"{system} node has {gpus}")
    layout = Layout(nodes, rpn, max(1, cores // rpn), gpus)
    check_fits(wf.sets, layout.capacity())
    return layout


def widest(wf: Workflow) -> int:
    """Ranks the workflow could keep busy at once: the largest DAG level's ranks."""
    per: dict[int, int] = {}
    for ts, lev in zip(wf.sets, _set_levels(wf)):
        per[lev] = per.get(lev, 0) + ts.n * max(ts.ranks, 1)
    return max(per.values()) if per else 0


def _set_levels(wf: Workflow) -> list[int]:
    children, parents = wf.set_graph()
    level = [0] * len(wf.sets)
    order = list(range(len(wf.sets)))
    # sets are few: relax until stable (the loader has rejected cycles)
    for _ in order:
        changed = False
        for b in order:
            for a in parents[b]:
                if level[b] < level[a] + 1:
                    level[b] = level[a] + 1
                    changed = True
        if not changed:
            break
    return level


# ---------------------------------------------------------------------------
# Templates. @NAME@ is replaced; every other character is bash, verbatim.
# ---------------------------------------------------------------------------

HEADERS = {
    "summit": """\
@ACCOUNT@#BSUB -P @ACCOUNT_VALUE@
#BSUB -J @JOB@
#BSUB -o @JOB@.%J.out
#BSUB -e @JOB@.%J.err
#BSUB -W @WALL_HHMM@
#BSUB -nnodes @NODES@
#BSUB -alloc_flags gpumps
@QUEUE@#BSUB -q @QUEUE_VALUE@""",
    "frontier": """\
@ACCOUNT@#SBATCH -A @ACCOUNT_VALUE@
#SBATCH -J @JOB@
#SBATCH -o @JOB@-%j.out
#SBATCH -t @WALL_HHMMSS@
#SBATCH -p @QUEUE_VALUE@
#SBATCH -N @NODES@""",
    "perlmutter": """\
@ACCOUNT@#SBATCH -A @ACCOUNT_VALUE@
#SBATCH -C gpu
#SBATCH -q @QUEUE_VALUE@
#SBATCH -t @WALL_HHMMSS@
#SBATCH -N @NODES@
#SBATCH --gpus-per-node=4
#SBATCH -J @JOB@
#SBATCH -o @JOB@-%j.out""",
    "polaris": """\
#PBS -N @JOB@
@ACCOUNT@#PBS -A @ACCOUNT_VALUE@
@QUEUE@#PBS -q @QUEUE_VALUE@
#PBS -l select=@NODES@:system=polaris
#PBS -l place=scatter
#PBS -l walltime=@WALL_HHMMSS@
#PBS -l filesystems=home:eagle
#PBS -j oe""",
    "aurora": """\
#PBS -N @JOB@
@ACCOUNT@#PBS -A @ACCOUNT_VALUE@
@QUEUE@#PBS -q @QUEUE_VALUE@
#PBS -l select=@NODES@
#PBS -l place=scatter
#PBS -l walltime=@WALL_HHMMSS@
#PBS -l filesystems=flare
#PBS -k doe""",
    "flux": """\
# flux: -N @NODES@
# flux: -t @WALL_MIN@m
# flux: --job-name=@JOB@
# flux: --output=@JOB@-{{id}}.out
@QUEUE@# flux: -q @QUEUE_VALUE@
@ACCOUNT@# flux: -B @ACCOUNT_VALUE@""",
    "slurm": """\
#SBATCH --job-name=@JOB@
#SBATCH --nodes=@NODES@
#SBATCH --ntasks-per-node=@RPN@
#SBATCH --cpus-per-task=@CPR@
#SBATCH --time=@WALL_HHMMSS@
#SBATCH --output=@JOB@-%j.out
#SBATCH --exclusive
@ACCOUNT@#SBATCH --account=@ACCOUNT_VALUE@
@QUEUE@#SBATCH --partition=@QUEUE_VALUE@
@GPUS@#SBATCH --gpus-per-node=@GPN@""",
    "pbs": """\
#PBS -N @JOB@
#PBS -l select=@NODES@:ncpus=@CORES@:mpiprocs=@RPN@@NGPUS@
#PBS -l place=scatter:excl
#PBS -l walltime=@WALL_HHMMSS@
#PBS -j oe
@ACCOUNT@#PBS -A @ACCOUNT_VALUE@
@QUEUE@#PBS -q @QUEUE_VALUE@""",
}

#: Environment lines (after the interpreter is chosen), by system.
ENVIRONMENT = {
    "summit": "# module load gcc spectrum-mpi cuda python",
    "frontier": "# module load PrgEnv-gnu cray-python rocm",
    "perlmutter": "# module load PrgEnv-gnu cray-mpich cudatoolkit python\n"
                  "# mpiwf sends only host memory through MPI.\n"
                  "export MPICH_GPU_SUPPORT_ENABLED=0",
    "polaris": "# module use /soft/modulefiles\n"
               "# module load PrgEnv-gnu cray-mpich cudatoolkit-standalone\n"
               "# mpiwf sends only host memory through MPI.\n"
               "export MPICH_GPU_SUPPORT_ENABLED=0\n"
               "# Read by the affinity helper if the launcher does not set PMI_LOCAL_SIZE.\n"
               "export RANKS_PER_NODE=@RPN@",
    "aurora": "# module load frameworks\n"
              "# mpiwf sends only host memory through MPI.\n"
              "export MPIR_CVAR_ENABLE_GPU=0\n"
              "# Read by the affinity helper if the launcher does not set PALS_LOCAL_SIZE.\n"
              "export RANKS_PER_NODE=@RPN@",
    "flux": "# module load gcc mvapich2",
    "slurm": "# module load gcc openmpi",
    "pbs": "# module load gcc mpich\n"
           "# Each host once, in order, for Hydra's -f (PBS_NODEFILE repeats it mpiprocs times).\n"
           "HOSTFILE=\"@JOB@-hosts-${PBS_JOBID:-local}.txt\"\n"
           "awk '!seen[$0]++' \"${PBS_NODEFILE:?run this script through qsub}\" > \"$HOSTFILE\"",
}

#: The launcher and its flags, by system; the ``mpiwf run`` line follows.
LAUNCH = {
    "summit": """\
# Six resource sets per node (1 V100 + 7 cores each); @APRS@ rank(s) per set,
# each bound to @CPR@ core(s); every rank sees only its set's GPU.
jsrun -n @RS_TOTAL@ -r 6 -a @APRS@ -c 7 -g 1 \\
    --bind packed:@CPR@ -d packed \\
    --smpiargs="-disable_gpu_hooks" \\""",
    "frontier": """\
# @CPR@ core(s) per rank, @RPG@ rank(s) per GCD, each rank bound to the GCD
# of its own L3 region.
srun -N @NODES@ -n @NTOTAL@ \\
    --cpus-per-task=@CPR@ \\
    --ntasks-per-gpu=@RPG@ \\
    --gpu-bind=closest \\
    --distribution='*:block' \\""",
    "perlmutter": """\
# @CPR@ core(s) per rank (Slurm counts 2 hardware threads per core), blocks of
# @RPG@ rank(s) per GPU.
srun -N @NODES@ -n @NTOTAL@ \\
    --ntasks-per-node=@RPN@ \\
    --cpus-per-task=@CPUS_HT@ \\
    --cpu-bind=cores \\
    --gpus-per-node=4 \\
    --gpu-bind=single:@RPG@ \\""",
    "polaris": """\
# Ranks @CPR@ hardware thread(s) apart in CPU order; the helper gives each rank
# the GPU nearest its core.
mpiexec -n @NTOTAL@ -ppn @RPN@ \\
    --depth=@CPR@ --cpu-bind depth \\
    @HELPER@ \\""",
    "aurora": """\
# One core per rank, skipping the reserved cores 0 and 52; the helper gives
# each rank a GPU tile of its own socket.
mpiexec -n @NTOTAL@ -ppn @RPN@ \\
    --cpu-bind=list:@CPU_LIST@ \\
    @HELPER@ \\""",
    "flux": """\
# @CPR@ core(s) per rank, whole nodes (--exclusive), GPUs shared out per task.
flux run -N @NODES@ -n @NTOTAL@ -c @CPR@ --exclusive \\
    -o cpu-affinity=per-task -o gpu-affinity=per-task \\""",
    "slurm": """\
# @CPR@ core(s) per rank, bound with --cpu-bind=cores.@GPU_COMMENT@
srun --nodes=@NODES@ --ntasks=@NTOTAL@ \\
    --ntasks-per-node=@RPN@ \\
    --cpus-per-task=@CPR@ --cpu-bind=cores \\@GPU_FLAGS@""",
    "pbs": """\
# Ranks filled node by node, each bound to @CPR@ core(s); GPU selection is left
# to mpiwf (node-local rank).
mpiexec -n @NTOTAL@ -ppn @RPN@ \\
    -f "$HOSTFILE" -bind-to @HYDRA_BIND@ \\""",
}

SCRIPT = """\
#!/bin/bash@LOGIN@
@HEADER@
# ======== the lines above are the batch header: edit account, queue there ========
#
# mpiwf job script for @TITLE@.
# Generated by `mpiwf jobscript` (mpiwf @VERSION@):
#   @COMMAND@
# Submit: @SUBMIT@
#
# Layout: @NODES@ node(s) x @RPN@ rank(s) per node = @NTOTAL@ rank(s): rank 0 is the
# master, @WORKERS@ worker rank(s); @CPR@ core(s) per rank.
# GPUs: @GPU_SUMMARY@.
# Workflow @WF_NAME@: @NSETS@ task set(s), @NTASKS@ task(s); largest request per task:
# ranks=@MAX_RANKS@ cores=@MAX_CORES@ gpus=@MAX_GPUS@.
#
# Launcher documentation used:
@DOCS@
set -euo pipefail
@CD@
# Interpreter of the environment holding mpiwf and mpi4py built against the site
# MPI (see docs/clusters.md); override with PYTHON=... at submission.
PYTHON="${PYTHON:-@PYTHON@}"
export MPIWF_LOG_LEVEL="${MPIWF_LOG_LEVEL:-INFO}"
# Module lines are examples only: load what mpi4py was built against.
@ENVIRONMENT@

# ========================= launch ===========================================
@LAUNCH@
    "$PYTHON" -m mpiwf run @SPEC@ --mode @MODE@ --trace @TRACE@

# ========================= analyse ==========================================
# Serial, on the first node of the job; no launcher needed.
"$PYTHON" -m mpiwf analyze @TRACE@
"""

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``@NAME@`` of ``template`` by ``values[NAME]``.

    Raises:
        KeyError: a placeholder has no value (a bug in a template).
    """
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _dq(text: str) -> str:
    """Inside double quotes, literally."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _comment_word(text: str) -> str:
    """``text`` as one bash word that stays on its comment line.

    ``shlex.quote`` where every character prints; otherwise ``$'...'`` with control
    and other unprintable characters escaped (a newline would end the comment and
    run the rest as a command), a byte of a path not UTF-8 as ``\\xHH``.
    """
    if text.isprintable():
        return shlex.quote(text)
    out = []
    for c in text:
        if c in "\\'":
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        elif 0xDC80 <= ord(c) <= 0xDCFF:  # surrogateescape: the path's own byte
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(ascii(c)[1:-1])  # \n, \x1b, \u202e: bash's $'...' reads them back
    return "$'" + "".join(out) + "'"


def trace_word(system: str, trace: str | None, default_stem: str) -> str:
    """The trace path as one bash word: ``trace`` literally, or ``STEM-$JOBID.h5``."""
    if trace:
        return shlex.quote(trace)
    var = JOB_ID_VAR[SYSTEMS[system].scheduler]
    return f'"{_dq(default_stem)}-${{{var}:-local}}.h5"'


def aurora_cpu_list(ranks_per_node: int) -> str:
    """``a:b:...``: one core per rank, half on each socket, cores 0 and 52 skipped."""
    half = ranks_per_node // 2
    return ":".join(str(c) for c in [*range(1, 1 + half), *range(53, 53 + half)])


def render(wf: Workflow, system: str, layout: Layout, *, spec: str, walltime: str,
           mode: str = "async", trace: str | None = None, account: str | None = None,
           queue: str | None = None, job_name: str = "mpiwf", python: str = "python3",
           helper_dir: str = "jobscripts", command: Sequence[str] = (),
           trace_stem: str = "mpiwf", fmt: str = "auto") -> str:
    """The job script text.

    Args:
        wf: the workflow (for the summary comment).
        system: a key of :data:`SYSTEMS`.
        layout: from :func:`plan`.
        spec: path of the spec, as the job will see it (best absolute).
        walltime: ``HH:MM``.
        mode: ``async``, ``sequential`` or ``doa=K`` (already checked).
        trace: trace path; ``None``: ``<trace_stem>-<job id>.h5``.
        account: project/account; ``None`` leaves the directive commented out.
        queue: queue, partition or QOS; ``None``: the system's default or none.
        job_name: the job's name (letters, digits, ``._-``).
        python: interpreter path written as the default of ``PYTHON``.
        helper_dir: directory of ``set_affinity_gpu_*.sh`` (Polaris, Aurora).
        command: the command line that rendered it (shown in a comment).
        fmt: the spec's format as given (``auto``, ``spec``, ``wfformat``): any
            other than ``auto`` is passed on to ``mpiwf run`` as ``--format``.
        trace_stem: default trace path without the ``-<job id>.h5`` suffix.

    Returns:
        The script; it passes ``bash -n`` and shellcheck.

    Raises:
        SpecError: an unknown system, a bad walltime or job name.
    """
    if system not in SYSTEMS:
        raise SpecError("--system", f"unknown system {system!r} (one of {', '.join(SYSTEMS)})")
    sysd = SYSTEMS[system]
    minutes = parse_walltime(walltime)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", job_name):
        raise SpecError("--job-name", f"use letters, digits, '.', '_', '-' only: {job_name!r}")
    for opt, val in (("--account", account), ("--queue", queue)):
        if val is not None and not re.fullmatch(r"[A-Za-z0-9._@-]+", val):
            raise SpecError(opt, f"use letters, digits, '.', '_', '@', '-' only: {val!r}")
    from . import __version__

    default_queue = {"frontier": "batch", "perlmutter": "regular"}.get(system)
    q = queue or default_queue
    L = layout
    rpg = L.ranks_per_node // L.gpus_per_node if L.gpus_per_node else 0
    gpu_need = max((ts.gpus for ts in wf.sets), default=0)
    if L.gpus_per_node and system == "pbs":
        gpu_summary = (f"{L.gpus_per_node} GPU(s) per node, not bound by the launcher "
                       "(mpiwf picks one by node-local rank)")
    elif L.gpus_per_node:
        gpu_summary = (f"{L.gpus_per_node} GPU(s) per node, ranks bound to one GPU each "
                       f"(about {max(1, rpg)} rank(s) per GPU)")
    else:
        gpu_summary = "no GPU binding"
    if gpu_need:
        gpu_summary += f"; GPU tasks need {gpu_need} GPU(s) each"
    v: dict[str, str] = {
        "JOB": job_name, "NODES": str(L.nodes), "RPN": str(L.ranks_per_node),
        "CPR": str(L.cores_per_rank), "NTOTAL": str(L.ranks), "WORKERS": str(L.workers),
        "GPN": str(L.gpus_per_node), "RPG": str(max(rpg, 1)),
        "CORES": str(L.ranks_per_node * L.cores_per_rank),
        "WALL_HHMM": f"{minutes // 60:02d}:{minutes % 60:02d}",
        "WALL_HHMMSS": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
        "WALL_MIN": str(minutes),
        "ACCOUNT": "" if account else "#", "ACCOUNT_VALUE": account or "MYACCOUNT",
        "QUEUE": "" if q else "#", "QUEUE_VALUE": q or "MYQUEUE",
        "GPUS": "" if L.gpus_per_node else "#",
        "NGPUS": f":ngpus={L.gpus_per_node}" if L.gpus_per_node else "",
        "HYDRA_BIND": "core" if L.cores_per_rank == 1 else f"core:{L.cores_per_rank}",
    }
    # system-specific numbers
    if system == "summit":
        v["APRS"] = str(L.ranks_per_node // 6)
        v["RS_TOTAL"] = str(6 * L.nodes)
        v["CPR"] = str(7 // (L.ranks_per_node // 6))
    if system == "perlmutter":
        v["CPUS_HT"] = str(2 * L.cores_per_rank)
    if system == "aurora":
        v["CPU_LIST"] = aurora_cpu_list(L.ranks_per_node)
    if system in ("polaris", "aurora"):
        v["HELPER"] = shlex.quote(f"{helper_dir.rstrip('/')}/set_affinity_gpu_{system}.sh")
    if system == "slurm":
        if L.gpus_per_node:
            per = -(-L.ranks_per_node // L.gpus_per_node)
            v["GPU_COMMENT"] = f"\n# Blocks of {per} rank(s) per GPU (--gpu-bind=single)."
            v["GPU_FLAGS"] = (f"\n    --gpus-per-node={L.gpus_per_node} "
                              f"--gpu-bind=single:{per} \\")
        else:
            v["GPU_COMMENT"] = ""
            v["GPU_FLAGS"] = ""
    # a switched-off directive is "##...": harmless for #BSUB/#SBATCH/#PBS, but flux
    # would read "## flux:" as a directive (RFC 36), so those lines are dropped
    header = "\n".join(line for line in fill(HEADERS[system], v).splitlines()
                       if not (system == "flux" and line.startswith("##")))
    max_req = [max((getattr(ts, k) for ts in wf.sets), default=0)
               for k in ("ranks", "cores", "gpus")]
    v.update({
        "LOGIN": " -l" if sysd.scheduler == "pbs" and sysd.fixed else "",
        "HEADER": header, "TITLE": sysd.title, "VERSION": __version__,
        "COMMAND": " ".join(_comment_word(c) for c in command) or "(library call)",
        "SUBMIT": f"{SUBMIT[sysd.scheduler]} <this file>",
        "GPU_SUMMARY": gpu_summary, "WF_NAME": repr(wf.name), "NSETS": str(len(wf.sets)),
        "NTASKS": str(wf.ntasks), "MAX_RANKS": str(max_req[0]),
        "MAX_CORES": str(max_req[1]), "MAX_GPUS": str(max_req[2]),
        "DOCS": "\n".join(f"#   {d}" for d in sysd.docs),
        "CD": 'cd "${PBS_O_WORKDIR:-.}"' if sysd.scheduler == "pbs" else "",
        "PYTHON": _dq(python),
        "ENVIRONMENT": fill(ENVIRONMENT[system], v),
        "LAUNCH": fill(LAUNCH[system], v),
        "SPEC": shlex.quote(spec) + ("" if fmt == "auto" else f" --format {shlex.quote(fmt)}"),
        "MODE": shlex.quote(mode), "TRACE": trace_word(system, trace, trace_stem),
    })
    return fill(SCRIPT, v)


__all__ = ["JOB_ID_VAR", "Layout", "SYSTEMS", "System", "parse_walltime", "plan", "render",
           "widest"]
