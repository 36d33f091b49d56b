"""Discovery and binding of worker ranks: node identity, cores, GPUs, strategies, layouts.

Three steps, one place:

1. :func:`discover` (collective, needs MPI): each rank reports its host, node-local
   rank (``Split_type(COMM_TYPE_SHARED)``), the cores of its current affinity and the
   GPUs it can see (``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``,
   ``HIP_VISIBLE_DEVICES``, else ``nvidia-smi -L``, else CuPy).
2. :func:`plan` (pure, rank 0): a named strategy, optionally overridden by a
   :class:`Layout` (file or flags), turns those reports into the worker table
   (:class:`~mpiwf.resources.WorkerSpec`). A layout may declare *virtual* GPUs on a
   CPU-only host so GPU placement can be tested; they are marked so.
3. :func:`apply` (every worker, once, before any task): ``sched_setaffinity`` to its
   cores, ``OMP_NUM_THREADS``, and its GPU made visible through
   ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES`` before CuPy initialises.

Strategies: ``auto`` (keep a binding the launcher already made, else ``split``; on an
oversubscribed node, fewer cores than workers, nothing is pinned),
``split`` (the node's cores divided into disjoint contiguous blocks, one per worker;
GPUs one per worker, first workers first), ``launcher`` (exactly what the launcher
gave each rank), ``none`` (no affinity change; one core and no GPU per worker).
This module imports mpi4py only inside :func:`discover`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from .errors import SpecError
from .resources import WorkerSpec

STRATEGIES = ("auto", "split", "launcher", "none")
GPU_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

_BOUND: WorkerSpec | None = None
_DEVICE_INDEX = 0
_SAVED: tuple[tuple[int, ...], MutableMapping[str, str], dict[str, str | None]] | None = None
_BOUND_VARS = ("OMP_NUM_THREADS",) + GPU_ENV_VARS[:2]
#: what apply() did beyond the main thread, for release(): the former affinity of each
#: other thread it moved, and the BLAS libraries' former thread counts
_SAVED_THREADS: tuple[dict[int, tuple[int, ...]], list[tuple[Any, int]]] = ({}, [])
#: the other threads of the process at the first apply() (only their former affinity
#: is theirs: a thread started since has a binding's), and whether any was moved
_THREADS_BEFORE: frozenset[int] = frozenset()
_THREADS_MOVED = False
#: OpenBLAS's thread-count calls, by the names its builds export (NumPy's wheels bundle
#: scipy-openblas, whose symbols carry a prefix and a suffix)
_OPENBLAS = [(f"{pre}openblas_set_num_threads{suf}", f"{pre}openblas_get_num_threads{suf}")
             for pre in ("", "scipy_") for suf in ("", "64_")]


# ====================================================================== discovery
def affinity() -> tuple[int, ...]:
    """Core ids this process may run on (its current affinity)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return tuple(range(os.cpu_count() or 1))


def _parse_ids(text: str) -> tuple[int, ...] | None:
    """Device ids of a ``*_VISIBLE_DEVICES`` value (CUDA rules: the list ends at the
    first invalid entry, e.g. ``-1``); UUID or MIG entries are numbered densely."""
    out: list[int] = []
    uuids = 0
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit() and not uuids:
            out.append(int(part))
        elif part.startswith(("GPU-", "MIG-")) and not out:
            uuids += 1
        else:
            break
    return tuple(range(uuids)) if uuids else tuple(out)


def visible_gpus(environ: Mapping[str, str] | None = None,
                 probe: bool = True) -> tuple[tuple[int, ...], str]:
    """GPU ids this process may use, and where they came from.

    The environment wins (it is what the launcher set). Without it, ``nvidia-smi
    -L`` counts the devices without initialising CUDA in this process (so a later
    ``CUDA_VISIBLE_DEVICES`` still takes effect); CuPy is the last resort.

    Args:
        environ: environment to read (default ``os.environ``).
        probe: may run ``nvidia-smi`` / import CuPy when the environment says nothing.

    Returns:
        ``(ids, source)``; source is the variable name, ``nvidia-smi``, ``cupy`` or
        ``none``.
    """
    env = os.environ if environ is None else environ
    for var in GPU_ENV_VARS:
        if var in env:
            ids = _parse_ids(env[var])
            if ids is not None:
                return ids, var
    if not probe:
        return (), "none"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
            n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
            if n:
                return tuple(range(n)), "nvidia-smi"
        except (OSError, subprocess.SubprocessError):
            pass
    n = cupy_device_count()
    if n:
        return tuple(range(n)), "cupy"
    return (), "none"


def cupy_device_count() -> int:
    """Devices CuPy sees (0 without CuPy or a driver); initialises CUDA when it can."""
    try:
        import cupy  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def discover(comm: Any) -> dict[str, Any]:
    """This rank's report (collective over ``comm``: every rank must call it).

    Returns:
        A dict: ``rank``, ``host``, ``pid``, ``local_rank``, ``local_size``,
        ``affinity`` (core ids), ``ncpus``, ``gpu_ids``, ``gpu_source``.
    """
    from mpi4py import MPI

    rank = comm.Get_rank()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    try:
        local_rank, local_size = node.Get_rank(), node.Get_size()
    finally:
        node.Free()
    gpus, source = visible_gpus()
    return {"rank": rank, "host": MPI.Get_processor_name(), "pid": os.getpid(),
            "local_rank": local_rank, "local_size": local_size, "affinity": affinity(),
            "ncpus": os.cpu_count() or 1, "gpu_ids": gpus, "gpu_source": source,
            "cores": 1, "core_ids": (), "virtual_gpu": False}


# ====================================================================== layouts
#: most cores, GPUs or workers of one node (larger is a typo, and would fill memory)
MAX_PER_NODE = 65536


@dataclasses.dataclass(frozen=True)
class Layout:
    """A declared machine that overrides what discovery found.

    Attributes:
        strategy: binding strategy (one of :data:`STRATEGIES`).
        gpus_per_node: GPUs of each node (replaces the GPUs found).
        cores_per_node: cores of each node, shared out among its workers (replaces
            the core count found; cores beyond the real ones are never pinned).
        virtual_gpus: the declared GPUs are virtual (placement tests on CPU hosts).
        workers_per_node: group worker ranks into virtual nodes of this many, in rank
            order, whatever their real host.
        workers: explicit rows ``{rank, node, cores, gpus}`` (win over the rest).
    """

    strategy: str = "auto"
    gpus_per_node: int | None = None
    cores_per_node: int | None = None
    virtual_gpus: bool = False
    workers_per_node: int | None = None
    workers: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SpecError("layout", f"unknown binding strategy {self.strategy!r} "
                            f"(use {', '.join(STRATEGIES)})")
        for name in ("gpus_per_node", "cores_per_node", "workers_per_node"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0
                                  or (v == 0 and name != "gpus_per_node")):
                raise SpecError("layout", f"{name} must be a whole number > 0, got {v!r}")
            if v is not None and v > MAX_PER_NODE:
                raise SpecError("layout", f"{name} must be at most {MAX_PER_NODE}, got {v!r}")
        for i, row in enumerate(self.workers):
            if not isinstance(row, dict) or "rank" not in row:
                raise SpecError("layout", f"workers[{i}] needs at least a rank")
            unknown = set(row) - {"rank", "node", "cores", "gpus"}
            if unknown:
                raise SpecError("layout", f"workers[{i}]: unknown field(s) "
                                f"{', '.join(sorted(unknown))}")
            for k in ("rank", "node", "cores", "gpus"):
                v = row.get(k, 0)
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise SpecError("layout", f"workers[{i}].{k} must be a whole number "
                                    f">= 0, got {v!r}")


_LAYOUT_KEYS = {f.name for f in dataclasses.fields(Layout)}


def layout_dict(layout: Layout | None) -> dict[str, Any]:
    """A layout as a plain dict (the trace's ``binding`` run attribute)."""
    return dataclasses.asdict(layout or Layout())


def layout_from_dict(d: Mapping[str, Any], path: str = "layout") -> Layout:
    """A :class:`Layout` from a mapping (unknown keys are errors)."""
    if not isinstance(d, Mapping):
        raise SpecError(path, "a layout must be a mapping")
    unknown = set(d) - _LAYOUT_KEYS
    if unknown:
        raise SpecError(path, f"unknown layout field(s): {', '.join(sorted(unknown))}")
    kw = dict(d)
    if "workers" in kw:
        if not isinstance(kw["workers"], list):
            raise SpecError(path, "workers must be a list")
        kw["workers"] = tuple(kw["workers"])
    if "virtual_gpus" in kw and not isinstance(kw["virtual_gpus"], bool):
        raise SpecError(path, "virtual_gpus must be true or false")
    try:
        return Layout(**kw)
    except SpecError as exc:
        raise SpecError(path, exc.problem) from None


def load_layout(path: str) -> Layout:
    """Read a layout file (YAML or JSON), as ``simulate --layout`` reads one.

    Raises:
        SpecError: no such file, a directory, bytes that are not UTF-8 text, a
            syntax error or a bad layout.
    """
    if not os.path.exists(path):
        raise SpecError(path, "no such layout file")
    if os.path.isdir(path):
        raise SpecError(path, "is a directory, not a layout file")
    from .spec import read_document

    doc = read_document(path)
    if doc is None:  # an empty file (or only comments): a slip, not "no layout"
        raise SpecError(path, "empty layout file (give its fields, e.g. strategy and "
                        "cores_per_node, or leave out --layout)")
    return layout_from_dict(doc, path)


def machine(nodes: int, cores_per_node: int, gpus_per_node: int = 0,
            workers_per_node: int | None = None, virtual_gpus: bool = True) -> list[WorkerSpec]:
    """A virtual machine for the simulator, built by the same :func:`plan` as a run.

    ``workers_per_node`` defaults to one worker per core plus one per GPU, the count
    model of the paper (e.g. Summit: ``machine(16, 42, 6)``).
    """
    wpn = workers_per_node or cores_per_node + gpus_per_node
    infos = [{"rank": 0, "host": "master", "affinity": (0,), "gpu_ids": ()}]
    for nd in range(nodes):
        for _k in range(wpn):
            infos.append({"rank": len(infos), "host": f"node{nd:04d}", "affinity": (),
                          "gpu_ids": ()})
    lay = Layout("split", gpus_per_node=gpus_per_node, cores_per_node=cores_per_node,
                 virtual_gpus=virtual_gpus)
    return plan(infos, lay)


# ====================================================================== planning
def _launcher_bound(group: Sequence[Mapping[str, Any]], node_cpus: Sequence[int]) -> bool:
    seen: set[int] = set()
    for inf in group:
        aff = set(inf.get("affinity", ()))
        if not aff or len(aff) >= len(node_cpus) or aff & seen:
            return False
        seen |= aff
    return True


def _split(items: Sequence[int], k: int) -> list[tuple[int, ...]]:
    """Share ``items`` among ``k`` takers: disjoint contiguous blocks, or round robin
    (shared) when there are fewer items than takers."""
    n = len(items)
    if k == 0:
        return []
    if n == 0:
        return [() for _ in range(k)]
    if n < k:
        return [(items[i % n],) for i in range(k)]
    base, extra = divmod(n, k)
    out, at = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        out.append(tuple(items[at:at + size]))
        at += size
    return out


def plan(infos: Sequence[Mapping[str, Any]], layout: Layout | None = None) -> list[WorkerSpec]:
    """The worker table from every rank's :func:`discover` report (rank 0 first).

    With one rank, rank 0 is the only worker; otherwise ranks >= 1 are. The node's
    cores are the union of its ranks' affinities (the master's included: it mostly
    sleeps, see mpi-notes.md); its GPUs the union of what its ranks see.

    Raises:
        SpecError: a layout that does not fit the ranks (e.g. real GPUs declared that
            are not there, an explicit row for a rank that does not exist).
    """
    lay = layout or Layout()
    hosts: dict[str, int] = {}
    for inf in infos:
        hosts.setdefault(str(inf["host"]), len(hosts))
    workers = list(infos[1:] if len(infos) > 1 else infos)
    node_of: dict[int, int] = {}
    if lay.workers_per_node:
        for i, inf in enumerate(workers):
            node_of[inf["rank"]] = i // lay.workers_per_node
    else:
        for inf in workers:
            node_of[inf["rank"]] = hosts[str(inf["host"])]
    host_of_node: dict[int, str] = {}
    cpus_of_host: dict[str, set[int]] = {}
    gpus_of_host: dict[str, set[int]] = {}
    for inf in infos:
        h = str(inf["host"])
        cpus_of_host.setdefault(h, set()).update(inf.get("affinity", ()))
        gpus_of_host.setdefault(h, set()).update(inf.get("gpu_ids", ()))
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for inf in workers:
        nd = node_of[inf["rank"]]
        groups.setdefault(nd, []).append(inf)
        host_of_node.setdefault(nd, str(inf["host"]))
    out: dict[int, WorkerSpec] = {}
    node_gpus: dict[int, list[int]] = {}
    for nd, group in groups.items():
        host = host_of_node[nd]
        real_cpus = sorted(cpus_of_host.get(host, ()))
        real_gpus = sorted(gpus_of_host.get(host, ()))
        node_gpus[nd] = real_gpus
        strategy = lay.strategy
        unpinned = False
        if strategy == "auto":
            strategy = "launcher" if _launcher_bound(group, real_cpus) else "split"
            # fewer cores than workers: pinning would pile ranks onto some cores while
            # the OS could balance them, so count one core each and leave them free
            unpinned = strategy == "split" and len(real_cpus) < len(group)
        if lay.gpus_per_node is not None:
            if not lay.virtual_gpus and lay.gpus_per_node > len(real_gpus):
                raise SpecError("layout", f"node {host} has {len(real_gpus)} GPU(s), the "
                                f"layout declares {lay.gpus_per_node} (declare them virtual: "
                                "virtual_gpus / --virtual-gpus)")
            gpus = list(range(lay.gpus_per_node)) if lay.virtual_gpus \
                else real_gpus[:lay.gpus_per_node]
            virtual = lay.virtual_gpus and lay.gpus_per_node > 0
        else:
            gpus, virtual = real_gpus, False
        k = len(group)
        core_sets: list[tuple[int, ...]]
        if lay.cores_per_node is not None:
            pinned = lay.cores_per_node <= len(real_cpus)
            ids = real_cpus[:lay.cores_per_node] if pinned else list(range(lay.cores_per_node))
            if k > len(ids):  # the count model: the first (GPU) workers own no core
                core_sets = [()] * (k - len(ids)) + [(c,) for c in ids]
            else:
                core_sets = _split(ids, k)
            counts = [len(c) for c in core_sets]
            if not pinned:
                core_sets = [() for _ in range(k)]
        elif unpinned:
            core_sets = [() for _ in range(k)]
            counts = [1] * k
        elif strategy == "split":
            core_sets = _split(real_cpus, k)
            counts = [len(c) for c in core_sets]
        elif strategy == "launcher":
            core_sets = [tuple(inf.get("affinity", ())) for inf in group]
            counts = [len(c) for c in core_sets]
        else:  # none
            core_sets = [() for _ in range(k)]
            counts = [1] * k
        if strategy == "launcher" and lay.gpus_per_node is None:
            gpu_sets = [tuple(inf.get("gpu_ids", ())) for inf in group]
        elif strategy == "none" and lay.gpus_per_node is None:
            gpu_sets = [() for _ in range(k)]
        else:  # one GPU per worker, first workers first; surplus GPUs round robin
            gpu_sets = [tuple(gpus[i::k]) for i in range(k)] if gpus else [()] * k
        for inf, cs, cnt, gs in zip(group, core_sets, counts, gpu_sets):
            out[inf["rank"]] = WorkerSpec(rank=int(inf["rank"]), node=nd, host=host,
                                          cores=cnt, gpus=len(gs), core_ids=tuple(cs),
                                          gpu_ids=tuple(gs), virtual_gpu=virtual and bool(gs))
    for i, row in enumerate(lay.workers):
        r = row["rank"]
        if r not in out:
            raise SpecError("layout", f"workers[{i}]: rank {r} is not a worker of this run "
                            f"(workers: {min(out)}..{max(out)})")
        old = out[r]
        ng = row.get("gpus", old.gpus)
        real = node_gpus.get(old.node, [])
        if len(old.gpu_ids) >= ng:
            gids, virt = old.gpu_ids[:ng], old.virtual_gpu
        elif len(real) >= ng and not lay.virtual_gpus:  # real GPUs, possibly shared
            gids, virt = tuple(real[:ng]), False
        elif lay.virtual_gpus:
            gids, virt = tuple(range(ng)), True
        else:
            raise SpecError("layout", f"workers[{i}]: rank {r}'s node has {len(real)} GPU(s), "
                            f"the layout gives it {ng} (declare them virtual)")
        nc = row.get("cores", old.cores)
        out[r] = dataclasses.replace(old, node=row.get("node", old.node), cores=nc,
                                     core_ids=old.core_ids if nc == old.cores else (),
                                     gpus=ng, gpu_ids=gids, virtual_gpu=virt and ng > 0)
    return [out[inf["rank"]] for inf in workers]


# ====================================================================== binding
def apply(spec: WorkerSpec, environ: MutableMapping[str, str] | None = None,
          set_affinity: bool = True) -> dict[str, Any]:
    """Bind this process to ``spec`` once, before any task runs.

    Sets the affinity to ``spec.core_ids`` (when known), ``OMP_NUM_THREADS`` to its
    core count, and makes its real GPUs the only visible ones (so CuPy, started
    later, sees them as devices 0..). When CuPy already initialised CUDA the
    variable would be ignored, so the device is selected by id instead.

    Returns:
        What was done (for logs and ``mpiwf doctor``).
    """
    global _BOUND, _DEVICE_INDEX, _SAVED, _SAVED_THREADS, _THREADS_BEFORE, _THREADS_MOVED
    env = os.environ if environ is None else environ
    done: dict[str, Any] = {}
    if _SAVED is None:
        _SAVED = (affinity(), env, {k: env.get(k) for k in _BOUND_VARS})
        _SAVED_THREADS = ({}, [])
        _THREADS_BEFORE = frozenset(_thread_ids())
        _THREADS_MOVED = False
    if set_affinity and spec.core_ids:
        try:
            os.sched_setaffinity(0, spec.core_ids)
            done["affinity"] = spec.core_ids
        except (AttributeError, OSError) as exc:  # pragma: no cover - not Linux
            done["affinity_error"] = str(exc)
        else:
            # the process's other threads too (sched_setaffinity moves the calling
            # thread only): NumPy's BLAS pool, started at import, kept the whole node
            # and ran a one-core worker's matmul on its neighbours' cores
            moved = _pin_threads(spec.core_ids)
            for tid, prev in moved.items():
                if tid in _THREADS_BEFORE:
                    _SAVED_THREADS[0].setdefault(tid, prev)
            if moved:
                _THREADS_MOVED = True
                done["threads_pinned"] = len(moved)
    if spec.cores > 0:
        env["OMP_NUM_THREADS"] = str(spec.cores)
        done["OMP_NUM_THREADS"] = spec.cores
        # a library already loaded sized its pool from the whole node: one thread per
        # core of this worker (no more than it may run on), as the variable says for
        # those loaded later; a count the user set before the run stays theirs
        user = [k for k in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS")
                if os.environ.get(k) or env.get(k)]
        if _SAVED[2].get("OMP_NUM_THREADS"):
            user.append("OMP_NUM_THREADS")
        n = max(1, min(spec.cores, len(affinity())))
        counts = [] if user else _set_blas_threads(n)
        if counts:
            if not _SAVED_THREADS[1]:
                _SAVED_THREADS[1].extend(counts)
            done["blas_threads"] = n
        elif user:
            done["blas_threads_set_by"] = user[0]
    _DEVICE_INDEX = 0
    if spec.gpu_ids and not spec.virtual_gpu:
        ids = ",".join(map(str, spec.gpu_ids))
        if "cupy" in sys.modules and _cuda_initialised():
            _DEVICE_INDEX = spec.gpu_ids[0]
            done["device"] = _DEVICE_INDEX
        else:
            var = "ROCR_VISIBLE_DEVICES" if "ROCR_VISIBLE_DEVICES" in env else \
                "CUDA_VISIBLE_DEVICES"
            cur = [p.strip() for p in env.get(var, "").split(",")]
            if cur and cur[0].startswith(("GPU-", "MIG-")):  # UUIDs: ids are positions
                ids = ",".join(cur[i] for i in spec.gpu_ids if i < len(cur))
            env[var] = ids
            done[var] = ids
    _BOUND = spec
    return done


def _cuda_initialised() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() >= 0)
    except Exception:
        return False


def release() -> None:
    """Undo :func:`apply` (affinity and variables) when a run ends, so a later run in
    the same process (tests, notebooks) discovers the machine as it was."""
    global _BOUND, _SAVED, _DEVICE_INDEX, _SAVED_THREADS, _THREADS_MOVED
    if _SAVED is None:
        return
    aff, env, old = _SAVED
    try:
        if set(aff) != set(affinity()):
            os.sched_setaffinity(0, aff)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass
    moved, blas = _SAVED_THREADS
    if _THREADS_MOVED:  # the threads moved back; those started since get the process's own
        _pin_threads(aff, moved)
    for setter, n in blas:
        setter(n)
    for k, v in old.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    _BOUND, _SAVED, _DEVICE_INDEX = None, None, 0
    _SAVED_THREADS = ({}, [])
    _THREADS_MOVED = False


def _thread_ids() -> list[int]:
    """The kernel ids of this process's threads ([] where /proc is not there)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return []


def _pin_threads(cores: Sequence[int],
                 back: Mapping[int, tuple[int, ...]] | None = None) -> dict[int, tuple[int, ...]]:
    """Set the affinity of every thread of this process but the calling one to
    ``cores`` (or, with ``back``, a thread listed there to its own entry). Returns the
    former affinity of each thread changed. Linux only (``/proc/self/task``); a thread
    that ends meanwhile is skipped."""
    import threading

    tids = _thread_ids()
    me = threading.get_native_id()
    want_all = set(cores)
    moved: dict[int, tuple[int, ...]] = {}
    for tid in tids:
        if tid == me:
            continue
        want = set(back[tid]) if back is not None and tid in back else want_all
        try:
            cur = os.sched_getaffinity(tid)
            if cur != want:
                os.sched_setaffinity(tid, want)
                moved[tid] = tuple(sorted(cur))
        except OSError:
            continue
    return moved


def _set_blas_threads(n: int) -> list[tuple[Any, int]]:
    """Set the thread count of every OpenBLAS this process has loaded (NumPy's, the
    usual one) to ``n``; returns each one's setter and former count, for
    :func:`release`. MKL and other BLAS builds read ``OMP_NUM_THREADS`` at load (set
    it in the job for those); nothing is loaded here that was not already."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            rows = [ln.split(None, 5) for ln in fh]
    except OSError:  # pragma: no cover - not Linux
        return []
    paths = {r[5].strip() for r in rows if len(r) == 6}
    out: list[tuple[Any, int]] = []
    for path in sorted(p for p in paths if "openblas" in os.path.basename(p).lower()
                       and ".so" in os.path.basename(p)):
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is None or getter is None:
                continue
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            was = int(getter())
            if was != n:
                setter(n)
                out.append((setter, was))
            break
    return out


def bound() -> WorkerSpec | None:
    """The spec this process was bound to by :func:`apply` (``None`` before)."""
    return _BOUND


def device_index() -> int:
    """The CUDA device index a GPU kernel should use in this process."""
    return _DEVICE_INDEX


def binding_env(spec: WorkerSpec | None = None) -> dict[str, str]:
    """Environment entries that carry a worker's binding to a subprocess."""
    s = spec or _BOUND
    out: dict[str, str] = {}
    if s is None:
        return out
    if s.cores > 0:
        out["OMP_NUM_THREADS"] = str(s.cores)
    out["MPIWF_CORES"] = ",".join(map(str, s.core_ids))
    out["MPIWF_GPUS"] = ",".join(map(str, s.gpu_ids))
    out["MPIWF_VIRTUAL_GPU"] = "1" if s.virtual_gpu else "0"
    if s.gpu_ids and not s.virtual_gpu:
        for var in GPU_ENV_VARS[:2]:
            if var in os.environ:
                out[var] = os.environ[var]
    return out


def warnings_for(workers: Sequence[WorkerSpec], infos: Sequence[Mapping[str, Any]] = ()
                 ) -> list[str]:
    """Problems worth a warning: shared cores, more GPU workers than GPUs, virtual GPUs."""
    out: list[str] = []
    by_core: dict[tuple[int, int], list[int]] = {}
    for w in workers:
        for c in w.core_ids:
            by_core.setdefault((w.node, c), []).append(w.rank)
    for (nd, c), ranks in sorted(by_core.items()):
        if len(ranks) > 1:
            out.append(f"node {nd}: ranks {', '.join(map(str, ranks))} are bound to the same "
                       f"core {c} (oversubscribed)")
    real: dict[int, set[int]] = {}
    users: dict[int, int] = {}
    for w in workers:
        if w.gpu_ids and not w.virtual_gpu:
            real.setdefault(w.node, set()).update(w.gpu_ids)
            users[w.node] = users.get(w.node, 0) + 1
    for nd, ids in sorted(real.items()):
        if users[nd] > len(ids):
            out.append(f"node {nd}: {users[nd]} GPU workers share {len(ids)} GPU(s)")
    if any(w.virtual_gpu for w in workers):
        out.append("virtual GPUs declared by the layout: GPU kernels will refuse to run")
    for inf in infos:
        if inf.get("gpu_source") == "cupy":
            out.append(f"rank {inf['rank']}: GPUs found through CuPy (CUDA initialised "
                       "before binding; the device is selected by id)")
            break
    return out


# ====================================================================== command line
def add_arguments(p: Any) -> None:
    """Add the binding and layout flags (``mpiwf run``, ``mpiwf doctor``)."""
    p.add_argument("--bind", default=None, choices=STRATEGIES,
                   help="binding strategy (default auto: keep the launcher's, else split)")
    p.add_argument("--layout", default=None, metavar="FILE",
                   help="declared machine (YAML/JSON): strategy, gpus_per_node, "
                   "cores_per_node, virtual_gpus, workers_per_node, workers")
    p.add_argument("--gpus-per-node", type=int, default=None, metavar="N",
                   help="GPUs of each node (with --virtual-gpus on hosts without them)")
    p.add_argument("--cores-per-node", type=int, default=None, metavar="N",
                   help="cores of each node, shared out among its workers")
    p.add_argument("--workers-per-node", type=int, default=None, metavar="N",
                   help="group worker ranks into virtual nodes of N")
    p.add_argument("--virtual-gpus", action="store_true",
                   help="the declared GPUs are virtual (GPU kernels refuse them)")


def from_args(args: Any) -> Layout:
    """The :class:`Layout` of parsed flags: the file first, flags win over it."""
    base = load_layout(args.layout) if getattr(args, "layout", None) else Layout()
    changes: dict[str, Any] = {}
    for flag, field in (("bind", "strategy"), ("gpus_per_node", "gpus_per_node"),
                        ("cores_per_node", "cores_per_node"),
                        ("workers_per_node", "workers_per_node")):
        v = getattr(args, flag, None)
        if v is not None:
            changes[field] = v
    if getattr(args, "virtual_gpus", False):
        changes["virtual_gpus"] = True
    if not changes:
        return base
    try:
        return dataclasses.replace(base, **changes)
    except SpecError as exc:
        raise SpecError("layout flags", exc.problem) from None
