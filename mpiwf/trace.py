"""The HDF5 trace: schema (declared once), incremental writer, reader.

Layout of a trace file (plain h5py reads all of it; no pickles)::

    /                      attrs: format="mpiwf-trace", format_version, nruns
    /runs/<k>/             one group per run (a resumed run appends a group)
        attrs              mode, command, versions, ranks, start_time (epoch s),
                           simulated, complete (False until the run ended cleanly), ...
        tasks              one row per task attempt not in ``done``, fields TASK_FIELDS
                           (no strings: a row's name comes from ``sets``, its host from
                           ``workers``; :func:`load` adds both as columns)
        done/              the successful first attempts of single-worker tasks (nearly
                           every task of a run), as they arrived: one 1-D dataset per
                           field of DONE_FIELDS, ``batches`` (BATCH_DTYPE, one row per
                           results message), and the logs ``dispatches`` and ``readies``
                           (LOG_DTYPE: runs of task ids sent, made ready, at a time);
                           :func:`load` derives the task rows from them
        sets               one row per task set, fields SET_FIELDS
        workers            one row per worker, fields WORKER_FIELDS
        set_edges          (parent set, child set, kind 0=all 1=one)
        task_edges         (parent task, child task)
        errors             one row per failed attempt: task, attempt, rank, host,
                           type, message, traceback

All times are float64 seconds since the run's ``start_time``. Rows are appended in
batches and the file is flushed after each, so a killed run keeps every task whose
row was flushed (at most ``flush_interval`` seconds are at risk; under a flood of
tiny tasks, besides the ROWS_PER_FLUSH = 65536 rows rank 0 buffers and the ``done``
entries past the last whole chunk, fewer than as many again, a flush for size writes
whole chunks but holds their ``batches`` and log rows, which make them readable, for
up to HOLD_FLUSHES = 4 such flushes within ``flush_interval``).
With ``background=True`` the rows are assembled and written by one writer thread
(numpy and HDF5's writes release the GIL), so a rank 0 with a spare core keeps
dispatching meanwhile; every other use of the file waits for the thread first. Up to
four handed-over flushes may then wait for the thread, so a process killed outright
can lose that many more batches; stops, signals and lost workers wait for it.
Only rank 0 writes. This module never imports mpi4py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .errors import TraceError
from .resources import WorkerSpec

FORMAT = "mpiwf-trace"
#: 2: the tasks dataset holds numbers only (name and host were S64 columns in 1:
#: 128 of 219 bytes per row, and their building cost rank 0 a third of the trace).
#: 3: successful first attempts of single-worker tasks are stored as the columns of
#: the ``done`` group (40 bytes each instead of a 91-byte row, written as they come:
#: no rows to build on rank 0); their other fields follow from ``sets`` and ``workers``
#: (``sets`` gained ``created``: every task of a set is added to the run at once)
#: 4: the ``done`` group holds what rank 0 received, as it received it (task, the
#: worker's start time, the duration: 24 bytes a task, written from the receive
#: buffers with no arithmetic); ready and dispatched times are logs of runs of tasks
#: (one row per run sent or made ready, not per task); :func:`load` derives started,
#: ended, ready and dispatched (format 3 stored them, five columns built per flush)
FORMAT_VERSION = 4
ROWS_PER_FLUSH = 65536
#: flushes for size (a flood of results) whose ``done`` rows (``batches`` and the
#: logs) may wait in memory for the next flush that makes them readable, and for no
#: longer than ``flush_interval`` since the last one; that flush also calls HDF5's
#: flush, which a flush for size alone skips
HOLD_FLUSHES = 4

#: Per-attempt task rows: (field, dtype, meaning).
TASK_FIELDS: list[tuple[str, str, str]] = [
    ("task", "<i8", "task id, dense from 0 in the workflow"),
    ("set", "<i4", "task-set id (row of sets)"),
    ("index", "<i8", "index of the task in its set"),
    ("attempt", "<i2", "0 for the first try, +1 per retry or re-run after a lost worker"),
    ("status", "<i1", "outcome: 4 done, 5 failed, 6 skipped, 7 cancelled (STATUS_NAMES)"),
    ("worker", "<i4", "rank of the worker that ran it (gang leader); -1 if it never ran"),
    ("nworkers", "<i4", "workers held by the task (its gang)"),
    ("node", "<i4", "node index of that worker; -1 if it never ran"),
    ("cores", "<i4", "cores held"),
    ("gpus", "<i4", "GPUs held"),
    ("created", "<f8", "task added to the run"),
    ("ready", "<f8", "dependencies (and stage) satisfied"),
    ("dispatched", "<f8", "sent to its worker"),
    ("started", "<f8", "kernel began (worker clock, corrected to rank 0's)"),
    ("ended", "<f8", "kernel returned (started + monotonic duration)"),
    ("received", "<f8", "result received by rank 0"),
]
#: Columns :func:`load` derives: stored in format 1 files, built from the sets and
#: workers tables for format 2.
DERIVED_FIELDS: list[tuple[str, str, str]] = [
    ("name", "S64", "task name: 'set' or 'set[i]' (UTF-8, cut at 64 bytes)"),
    ("host", "S64", "host of the worker (UTF-8, cut at 64 bytes); empty if its rank is unknown"),
]
#: The ``done`` group's columns, each a 1-D dataset: one entry per successful first
#: attempt run by one worker, as its worker reported it; entry i belongs to the
#: results message (``batches`` row) that the running sum of ``batches["n"]`` puts it
#: in. :func:`load` derives the row: started = start - the worker's clock_offset -
#: start_time, then dispatched <= started <= ended = started + duration <= received;
#: ready and dispatched from the logs, created from ``sets.created``.
DONE_FIELDS: list[tuple[str, str, str]] = [
    ("task", "<i8", "task id"),
    ("start", "<f8", "kernel began: the worker's clock, epoch seconds"),
    ("duration", "<f8", "seconds the kernel ran (the worker's monotonic clock)"),
]
#: Format 3's ``done`` columns (still read): times as in TASK_FIELDS.
DONE_FIELDS_3 = ["task", "started", "ended", "ready", "dispatched"]
#: fill values of the ``done`` columns other than 0: an entry never written
_DONE_FILL = {"task": -1}
#: ``done/batches``: one row per results message: how many ``done`` entries it holds,
#: when rank 0 received it, the rank of the worker that sent it, and that worker's
#: clock minus rank 0's (format 3 rows lack ``offset``: their times were corrected).
BATCH_DTYPE = np.dtype([("n", "<i4"), ("received", "<f8"), ("worker", "<i4"),
                        ("offset", "<f8")])
#: ``done/dispatches`` and ``done/readies``: tasks ``first`` .. ``end`` - 1 were sent to
#: a worker (made ready) at ``time``; a later row for a task overrides an earlier one.
LOG_DTYPE = np.dtype([("first", "<i8"), ("end", "<i8"), ("time", "<f8")])
#: A stored row (the ``tasks`` dataset; what writers append).
ROW_DTYPE = np.dtype([(n, t) for n, t, _ in TASK_FIELDS])
#: A row as :func:`load` returns it: the stored fields plus name and host.
TASK_DTYPE = np.dtype([(n, t) for n, t, _ in TASK_FIELDS + DERIVED_FIELDS])
class DoneBlock(NamedTuple):
    """Entries for the ``done`` group (what :meth:`TraceWriter.add_done` takes): one
    array per field of DONE_FIELDS, all of one length; the BATCH_DTYPE rows of the
    messages they came in (their ``n`` sum to that length); the LOG_DTYPE rows of the
    runs of tasks sent and made ready since the last block (every entry's must be in
    this block or an earlier one); and the earliest start and latest end of the
    entries (seconds since ``start_time``: the trace's makespan)."""

    task: np.ndarray
    start: np.ndarray
    duration: np.ndarray
    batches: np.ndarray
    dispatches: np.ndarray
    readies: np.ndarray
    span: tuple[float, float]


STATUS_NAMES = ("pending", "ready", "dispatched", "running", "done", "failed", "skipped",
                "cancelled", "timeout", "lost")
DONE = STATUS_NAMES.index("done")

_str = None  # h5py string dtype, created lazily


def _h5() -> Any:
    import h5py

    return h5py


def _vstr() -> Any:
    global _str
    if _str is None:
        _str = _h5().string_dtype("utf-8")
    return _str


SET_FIELDS = [("sid", "<i4"), ("name", "vstr"), ("n", "<i8"), ("kernel", "vstr"),
              ("ranks", "<i4"), ("cores", "<i4"), ("gpus", "<i4"), ("duration", "<f8"),
              ("stage", "<i4"), ("level", "<i4"), ("offset", "<i8"), ("created", "<f8")]
WORKER_FIELDS = [("rank", "<i4"), ("node", "<i4"), ("host", "vstr"), ("cores", "<i4"),
                 ("gpus", "<i4"), ("core_ids", "vstr"), ("gpu_ids", "vstr"),
                 ("virtual_gpu", "?"), ("pid", "<i8"), ("clock_offset", "<f8")]
ERROR_FIELDS = [("task", "<i8"), ("attempt", "<i2"), ("rank", "<i4"), ("host", "vstr"),
                ("type", "vstr"), ("message", "vstr"), ("traceback", "vstr")]


#: the two fields of a set row that sets added later may change
_STAGE_LEVEL = np.dtype([("stage", "<i4"), ("level", "<i4")])


def _fields(tbl: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The fields of ``dtype`` out of the table ``tbl``, as a packed array."""
    out = np.zeros(len(tbl), dtype=dtype)
    for name in dtype.names or ():
        out[name] = tbl[name]
    return out


def _dtype(fields: Sequence[tuple[str, str]]) -> np.dtype:
    return np.dtype([(n, _vstr() if t == "vstr" else t) for n, t in fields])


def _table(rows: Sequence[dict[str, Any]], fields: Sequence[tuple[str, str]]) -> np.ndarray:
    arr = np.zeros(len(rows), dtype=_dtype(fields))
    for i, r in enumerate(rows):
        for n, _t in fields:
            v = r.get(n)
            if v is None:
                continue
            if isinstance(v, (list, tuple)):
                v = ",".join(str(x) for x in v)
            arr[i][n] = v
    return arr


_FALLOC_FL_KEEP_SIZE = 1
_fallocate_fn: Any = None  # libc's fallocate(2), looked up once (False: not there)


def _fallocate() -> Any:
    """libc's ``fallocate`` (Linux), or ``None``."""
    global _fallocate_fn
    if _fallocate_fn is None:
        try:
            import ctypes

            if ctypes.sizeof(ctypes.c_void_p) < 8:  # a 32-bit off_t: not worth it
                raise AttributeError("32-bit")
            fn = ctypes.CDLL(None, use_errno=True).fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            _fallocate_fn = fn
        except (OSError, AttributeError):
            _fallocate_fn = False
    return _fallocate_fn or None


def _open(path: str, mode: str) -> Any:
    h5py = _h5()
    try:
        return h5py.File(path, mode, locking=False)
    except TypeError:  # h5py < 3.5
        return h5py.File(path, mode)


def versions() -> dict[str, str]:
    """Versions of mpiwf and the libraries a trace depends on (no MPI import)."""
    import sys

    from . import __version__

    out = {"mpiwf": __version__, "python": sys.version.split()[0], "numpy": np.__version__}
    try:
        out["h5py"] = _h5().__version__
        out["hdf5"] = _h5().version.hdf5_version
    except Exception:  # pragma: no cover - h5py always present
        pass
    return out


class TraceWriter:
    """Append-only writer of one run group.

    Args:
        path: the HDF5 file (created, or appended to with ``append=True``).
        workflow: the workflow (sets and edges are written at once).
        workers: the worker table.
        attrs: run attributes (mode, command, versions, ...); JSON-encoded when not
            a plain number or string.
        start_time: epoch seconds that all task times are relative to.
        append: add a run group to an existing trace instead of overwriting it.
        flush_interval: seconds between flushes.
        background: assemble and write rows in a writer thread (see the module doc).
        done_chunk: entries per chunk of the ``done`` columns (default: the smallest
            power of two from 1,024 to 65,536 that holds the workflow's tasks).
        defer: only create (or open and check) the file now; lay out the run group
            at :meth:`start`, or at the first use that needs it. The master starts it
            once the first tasks are out, so the workers run while it is laid out
            (several milliseconds of HDF5 calls) instead of waiting for it.
    """

    def __init__(self, path: str, workflow: Any, workers: Sequence[WorkerSpec],
                 attrs: dict[str, Any] | None = None, start_time: float | None = None,
                 append: bool = False, flush_interval: float = 1.0,
                 worker_extra: Sequence[dict[str, Any]] | None = None,
                 background: bool = False, done_chunk: int | None = None,
                 defer: bool = False) -> None:
        self.path = path
        self.wf = workflow
        self.start_time = time.time() if start_time is None else start_time
        self.flush_interval = flush_interval
        self.rows: list[tuple[Any, ...]] = []
        #: ROW_DTYPE arrays from add_rows, or callables that build one (run by the
        #: writer thread in background mode)
        self.blocks: list[np.ndarray | Callable[[], np.ndarray]] = []
        #: DoneBlocks from add_done (or callables that build one), each with the
        #: callable to call once it is written (or None)
        self.done: list[tuple[DoneBlock | Callable[[], DoneBlock],
                              Callable[[], None] | None]] = []
        #: rows are built and written by a writer thread (``background=True``)
        self.background = bool(background)
        self._jobs: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        #: called first by :meth:`flush`, so a driver that buffers rows in its own
        #: compact form (the master) hands them over at every flush
        self.pre_flush: Callable[[], None] | None = None
        self.errors: list[dict[str, Any]] = []
        self.nrows = 0
        #: (earliest started, latest ended) of the rows written so far
        self.span = (float("inf"), float("-inf"))
        self.last_flush = time.perf_counter()
        self._nsets_written = 0
        #: the stage and level of each set row written (sets_added rewrites only these
        #: two fields of the rows they change for)
        self._stage_level = np.zeros(0, dtype=_STAGE_LEVEL)
        exists = os.path.exists(path)
        if append and exists:
            try:
                self.f = _open(path, "a")
            except OSError as exc:
                raise TraceError(f"{path}: cannot append to trace ({exc})") from None
            if self.f.attrs.get("format") != FORMAT:
                self.f.close()
                raise TraceError(f"{path}: not an mpiwf trace")
        else:
            try:
                self.f = _open(path, "w")
            except OSError as exc:
                raise TraceError(f"{path}: cannot create trace ({exc})") from None
            self.f.attrs["format"] = FORMAT
            self.f.attrs["status_names"] = json.dumps(STATUS_NAMES)
        self._attrs = attrs
        self._workers = (workers, worker_extra)
        #: sets start() writes as the workflow's own (created 0); later ones come
        #: through sets_added with their time. A driver that adds sets before the
        #: layout (Master, for a deferred writer) sets it to its own count.
        self.nsets_at_start = len(workflow.sets)
        self.g: Any = None  # the run group, once started
        # chunks of up to 65,536 entries (512 KiB; a small run gets small ones):
        # smaller chunks cost a flush twice as much
        self._chunk = int(done_chunk or min(65536, max(
            1024, 1 << max(int(workflow.ntasks) - 1, 0).bit_length())))
        self._direct = hasattr(_h5().h5d.DatasetID, "write_direct_chunk")
        self.ndone = 0
        # The done columns are written a whole chunk at a time (HDF5's direct chunk
        # write: one copy, no chunk cache); the entries past the last whole chunk wait
        # in ``_tails`` and are written padded at every flush that is not only for
        # size (``flush(tail=False)``): at most ``flush_interval`` s later.
        self._full = 0  # whole chunks written
        self._tails: list[np.ndarray] = [np.zeros(0, dtype=t) for _, t, _ in DONE_FIELDS]
        self._tail_written = True
        self._pad: np.ndarray | None = None  # bytes of a padded last chunk (any column)
        #: (batches, dispatches, readies) of the DoneBlocks whose entries are written
        #: but whose rows are not yet (a flush for size holds them: HOLD_FLUSHES)
        self._held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        #: when a flush last made everything handed over readable (held rows wait
        #: no longer than flush_interval after it)
        self._durable_at = time.perf_counter()
        #: the file's descriptor for reserving space (-1: not looked up, None: off)
        #: and the end of the space reserved so far (see _reserve)
        self._fd: int | None = -1
        self._reserved = 0
        self._done_failed = False  # a write of the done columns failed (see _append_done)
        if not defer:
            self.start()

    @property
    def started(self) -> bool:
        """The run group is laid out (see ``defer``)."""
        return self.g is not None

    def start(self) -> None:
        """Lay out the run group: attributes, the datasets, the workers and the sets
        (once; every use of the file that needs them calls it)."""
        if self.g is not None:
            return
        workflow, attrs = self.wf, self._attrs
        # the root describes the newest run (a resumed format-1 trace is raised to
        # this format; its older run groups, which lack the attribute, stay format 1)
        self.f.attrs["format_version"] = FORMAT_VERSION
        self.f.attrs["task_fields"] = json.dumps(TASK_FIELDS)
        runs = self.f.require_group("runs")
        self.run_index = len(runs)
        self.g = runs.create_group(str(self.run_index))
        self.f.attrs["nruns"] = self.run_index + 1
        a = self.g.attrs
        a["format_version"] = FORMAT_VERSION
        a["task_fields"] = json.dumps(TASK_FIELDS)
        a["start_time"] = self.start_time
        a["start_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.start_time))
        a["complete"] = False
        a["workflow"] = workflow.name
        a["ntasks"] = workflow.ntasks
        for k, v in (attrs or {}).items():
            self.set_attr(k, v)
        self.tasks = self.g.create_dataset("tasks", shape=(0,), maxshape=(None,),
                                           dtype=ROW_DTYPE, chunks=(1024,))
        self._tasks = _Column(self.tasks, ROW_DTYPE)
        chunk = self._chunk
        done = self.g.create_group("done")
        # task -1 marks an entry never written (a run killed between growing the
        # columns and writing their chunk): load() stops there
        self.done_ds = [done.create_dataset(n, shape=(0,), maxshape=(None,), dtype=t,
                                            chunks=(chunk,),
                                            fillvalue=_DONE_FILL.get(n, 0))
                        for n, t, _ in DONE_FIELDS]
        self.batches = done.create_dataset("batches", shape=(0,), maxshape=(None,),
                                           dtype=BATCH_DTYPE, chunks=(max(chunk // 64, 256),))
        self.logs = [done.create_dataset(n, shape=(0,), maxshape=(None,), dtype=LOG_DTYPE,
                                         chunks=(1024,)) for n in ("dispatches", "readies")]
        self._done_cols = [_Column(ds, t) for ds, (_, t, _) in zip(self.done_ds, DONE_FIELDS)]
        self._batch_col = _Column(self.batches, BATCH_DTYPE)
        self._log_cols = [_Column(ds, LOG_DTYPE) for ds in self.logs]
        # the workflow's own sets (created 0) and its edges, written as they are made
        # (one HDF5 call each, not an empty dataset grown and written: sets_added)
        desc = workflow.describe()[:self.nsets_at_start]
        for d in desc:
            d["created"] = 0.0
        tbl = _table(desc, SET_FIELDS)
        self.g.create_dataset("sets", data=tbl, maxshape=(None,), chunks=(256,))
        self._nsets_written = len(desc)
        self._stage_level = _fields(tbl, _STAGE_LEVEL)
        for name, edges, width in (("set_edges", workflow.set_deps, 3),
                                   ("task_edges", workflow.task_edges, 2)):
            self.g.create_dataset(name, data=np.array(edges, dtype="<i8").reshape(-1, width),
                                  maxshape=(None, width), chunks=(1024, width))
        self.g.create_dataset("errors", shape=(0,), maxshape=(None,), dtype=_dtype(ERROR_FIELDS),
                              chunks=(64,))
        self.write_workers(*self._workers)
        self.f.flush()
        if self.background:
            # a few flushes may queue up; more and the producer waits (bounded memory)
            self._jobs = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._serve, name="mpiwf-trace",
                                            daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ writer thread
    def _serve(self) -> None:
        jobs = self._jobs
        assert jobs is not None
        while True:
            job = jobs.get()
            try:
                if job is None:
                    return
                if self._failed is None:
                    job()
            except BaseException as exc:  # reported by the next sync() in the main thread
                self._failed = exc
            finally:
                jobs.task_done()

    def sync(self) -> None:
        """Wait until the writer thread has written everything handed to it (a no-op
        without one); raise what it failed with. Call before touching the file."""
        if self._jobs is not None:
            self._jobs.join()
        if self._failed is not None:
            exc, self._failed = self._failed, None
            raise TraceError(f"{self.path}: trace write failed: {exc}") from exc

    # ------------------------------------------------------------------ metadata
    def _ready(self) -> None:
        """Before metadata is written: the writer thread idle, the run group laid out."""
        self.sync()
        self.start()  # nothing once it is

    def set_attr(self, key: str, value: Any) -> None:
        """Set a run attribute (non-scalars are stored as JSON text)."""
        self._ready()
        if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
            self.g.attrs[key] = value
        else:
            self.g.attrs[key] = json.dumps(value, default=str)

    def write_workers(self, workers: Sequence[WorkerSpec],
                      extra: Sequence[dict[str, Any]] | None = None) -> None:
        """(Re)write the worker table."""
        self._ready()
        rows = []
        for i, w in enumerate(workers):
            d = w.as_dict()
            if extra is not None and i < len(extra):
                d.update(extra[i])
            rows.append(d)
        if "workers" in self.g:
            del self.g["workers"]
        self.g.create_dataset("workers", data=_table(rows, WORKER_FIELDS))

    def sets_added(self, created: float = 0.0, upto: int | None = None) -> None:
        """Write the sets and edges added to the workflow since the last call;
        ``created``: when they were added to the run (seconds since ``start_time``);
        ``upto``: write only the sets before this one (start() writes the workflow's
        own, a later call those added after the writer was made, with their time)."""
        self._ready()
        wf = self.wf
        desc = wf.describe()[:upto]
        new = desc[self._nsets_written:]
        for d in new:
            d["created"] = created
        old = self._nsets_written
        if new:
            ds = self.g["sets"]
            ds.resize((len(desc),))
            tbl = _table(new, SET_FIELDS)
            ds[old:] = tbl
            # stages and levels of existing sets may change when sets are added: those
            # two fields alone, of the rows between the first and last that changed (a
            # rewrite of the whole table gave every name a new heap object each time,
            # and a run killed while sets were being added could leave the table's
            # names pointing at heap data never written: the trace could not be read)
            was = self._stage_level
            now = np.zeros(old, dtype=_STAGE_LEVEL)
            now["stage"] = [d["stage"] for d in desc[:old]]
            now["level"] = [d["level"] for d in desc[:old]]
            diff = np.flatnonzero(now != was)
            if len(diff):
                lo, hi = int(diff[0]), int(diff[-1]) + 1
                h5 = _h5()
                fspace = ds.id.get_space()
                fspace.select_hyperslab((lo,), (hi - lo,))
                ds.id.write(h5.h5s.create_simple((hi - lo,)), fspace, now[lo:hi],
                            mtype=h5.h5t.py_create(_STAGE_LEVEL))
            self._stage_level = np.concatenate([now, _fields(tbl, _STAGE_LEVEL)])
        self._nsets_written = len(desc)
        se = np.array(wf.set_deps, dtype="<i8").reshape(-1, 3)
        te = np.array(wf.task_edges, dtype="<i8").reshape(-1, 2)
        for name, arr in (("set_edges", se), ("task_edges", te)):
            ds = self.g[name]
            if len(arr) > ds.shape[0]:
                old = ds.shape[0]
                ds.resize((len(arr), arr.shape[1]))
                ds[old:] = arr[old:]

    # ------------------------------------------------------------------ rows
    def add(self, row: tuple[Any, ...]) -> None:
        """Append one task-attempt row (the fields of TASK_FIELDS, in order)."""
        self.rows.append(row)
        if len(self.rows) >= ROWS_PER_FLUSH:
            self.flush()

    def add_rows(self, rows: np.ndarray | Callable[[], np.ndarray]) -> None:
        """Append many rows at once (a ROW_DTYPE array, or a callable that builds one
        when written); written at the next flush."""
        if callable(rows) or len(rows):
            self.blocks.append(rows)

    def add_done(self, block: DoneBlock | Callable[[], DoneBlock],
                 release: Callable[[], None] | None = None) -> None:
        """Append entries to the ``done`` group (a DoneBlock, or a callable that builds
        one when written); written at the next flush, after which ``release`` is
        called (the block's memory may then be reused), also if the write failed."""
        self.done.append((block, release))

    def add_error(self, task: int, attempt: int, rank: int, host: str, etype: str,
                  message: str, tb: str) -> None:
        """Record a failed attempt's error (written at the next flush)."""
        self.errors.append(dict(task=task, attempt=attempt, rank=rank, host=host, type=etype,
                                message=message, traceback=tb))

    def maybe_flush(self) -> None:
        """Flush if ``flush_interval`` has passed since the last flush (without waiting
        for a writer thread)."""
        if (self.rows or self.errors or self.blocks or self.done or
                self.pre_flush is not None) and \
                time.perf_counter() - self.last_flush >= self.flush_interval:
            self.flush(wait=False)

    def flush(self, wait: bool = True, tail: bool = True) -> None:
        """Write buffered rows and errors and flush the file to disk.

        With a writer thread, ``wait=False`` hands them over and returns at once;
        ``wait=True`` (the default: durability points) returns once they are written.
        ``tail=False`` (a flush for size, not time) leaves the ``done`` entries past
        the last whole chunk for the next flush.
        """
        self.last_flush = time.perf_counter()
        if self.g is None:
            self.start()
        if self.pre_flush is not None:
            self.pre_flush()
        blocks = self.blocks
        if self.rows:
            blocks.append(np.array(self.rows, dtype=ROW_DTYPE))
            self.rows = []
        self.blocks = []
        done, self.done = self.done, []
        errors, self.errors = self.errors, []
        if self._jobs is None:
            self._write(blocks, done, errors, tail)
            return
        if self._failed is None:
            self._jobs.put(lambda: self._write(blocks, done, errors, tail))
        if wait:
            self.sync()

    @property
    def done_chunk(self) -> int:
        """Entries per chunk of the ``done`` columns when they are written a whole chunk
        at a time (0 otherwise): a driver that hands over entries ending on a chunk
        boundary (:meth:`add_done`) has them written without a copy."""
        return self._chunk if self._direct else 0

    @property
    def tail_pending(self) -> bool:
        """``done`` entries wait for a flush with ``tail`` to be readable: those past
        the last whole chunk, or the rows of those written (see :meth:`_append_done`)."""
        return not self._tail_written or bool(self._held)

    def _write(self, blocks: list[Any], done: list[Any], errors: list[dict[str, Any]],
               tail: bool = True) -> None:
        if done:
            try:
                self._append_done([b() if callable(b) else b for b, _ in done])
            finally:
                for _, release in done:
                    if release is not None:
                        release()
        if not (tail or blocks or errors or len(self._held) >= HOLD_FLUSHES
                or time.perf_counter() - self._durable_at >= self.flush_interval):
            # a flush for size in a flood: the done columns' whole chunks went out,
            # their rows wait (see _append_done); nothing made durable, no H5Fflush
            return
        if self._held:
            self._write_held()
        if tail and not self._tail_written:
            self._write_tail()
        if blocks:
            parts = [b() if callable(b) else b for b in blocks]
            arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if arr.dtype != ROW_DTYPE:
                arr = arr.astype(ROW_DTYPE)
            if len(arr):
                self._append(arr)
                lo, hi = float(arr["started"].min()), float(arr["ended"].max())
                self.span = (min(self.span[0], lo), max(self.span[1], hi))
        if errors:
            ds = self.g["errors"]
            n0 = ds.shape[0]
            ds.resize((n0 + len(errors),))
            ds[n0:] = _table(errors, ERROR_FIELDS)
        self.f.flush()
        self._durable_at = time.perf_counter()

    def _append(self, arr: np.ndarray) -> None:
        """Append rows to the tasks dataset."""
        self.nrows = self._tasks.append(arr)

    def _append_done(self, parts: list[DoneBlock]) -> None:
        """Append DoneBlocks to the ``done`` columns; their log and ``batches`` rows
        are held (:meth:`_write_held` writes them at the next flush that is not only
        for size, or once HOLD_FLUSHES blocks wait): a file cut short holds no more
        entries than its batch rows count, each with its log rows, and :func:`load`
        reads no more than every column holds."""
        if self._done_failed:  # reported when it failed; these cannot go in step
            return
        cols = [p[0] if len(parts) == 1 else np.concatenate(p)
                for p in list(zip(*parts))[:3]]
        n = len(cols[0])
        if n:
            if self._direct:
                try:
                    self._chunks_out(cols)
                except BaseException:
                    # the columns may be out of step now: write no more of them,
                    # nor rows that would make them readable
                    self._done_failed = True
                    raise
            else:  # pragma: no cover - h5py builds without direct chunk writes
                for col, arr in zip(self._done_cols, cols):
                    col.append(arr)
        # their rows only once the columns are written (a failed write must not
        # leave rows counting entries that are not there)
        for p in parts:
            self._held.append((p.batches, p.dispatches, p.readies))
        self.ndone += n
        lo = min(p.span[0] for p in parts)
        hi = max(p.span[1] for p in parts)
        self.span = (min(self.span[0], lo), max(self.span[1], hi))

    def _write_held(self) -> None:
        """Append the held log rows, then the ``batches`` rows (last: see
        :meth:`_append_done`)."""
        held, self._held = self._held, []
        cols = [p[0] if len(held) == 1 else np.concatenate(p) for p in zip(*held)]
        for log, arr in zip(self._log_cols, cols[1:]):
            if len(arr):
                log.append(arr)
        if len(cols[0]):
            self._batch_col.append(cols[0])

    def _reserve(self, nbytes: int, ahead: int) -> None:
        """Reserve disk space for the next ``nbytes`` past the file's end, and
        ``ahead`` more (Linux ``fallocate`` with FALLOC_FL_KEEP_SIZE: the file's size
        does not change, HDF5 sees nothing). Writing into reserved blocks costs the
        page cache about a third less than writing blocks it must allocate: 3.7
        against 5.4 ms for 16 flushes of 65,536 entries on ext4. Off for good at the
        first failure (a file system without it); close() gives back the reserve."""
        fd = self._fd
        if fd is None:
            return
        try:
            fn = _fallocate()
            if fn is None or self.f.driver != "sec2":
                raise OSError("no fallocate, or not a plain file")
            if fd < 0:
                # a descriptor of our own (closed by _unreserve), of this very file
                st, mine = os.stat(self.path), os.fstat(int(self.f.id.get_vfd_handle()))
                if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                    raise OSError("not this file")
                self._fd = fd = os.dup(int(self.f.id.get_vfd_handle()))
            size = os.fstat(fd).st_size
            if size + nbytes <= self._reserved:
                return
            start = max(size, self._reserved)
            length = size + nbytes + ahead - start
            if fn(fd, _FALLOC_FL_KEEP_SIZE, start, length) != 0:
                raise OSError("fallocate failed")
            self._reserved = start + length
        except Exception:  # any failure: write as before, unreserved
            self._unreserve()
            self._fd = None

    def _unreserve(self) -> None:
        """Give back the reserved space past the file's end (truncating a file to its
        own size frees the blocks past it) and close our descriptor; after the file
        is closed, or on giving up reserving."""
        fd, self._fd = self._fd, None
        if fd is None or fd < 0:
            return
        try:
            if self._reserved:  # ~4 us where nothing is past the end (see _chunks_out)
                os.ftruncate(fd, os.fstat(fd).st_size)
        except OSError:
            pass
        finally:
            self._reserved = 0
            os.close(fd)

    def _chunks_out(self, cols: list[np.ndarray]) -> None:
        """Write every whole chunk the tails and ``cols`` make; keep the rest as the
        new tails (:meth:`_write_tail` writes them padded)."""
        c = self._chunk
        full = self._full + (len(self._tails[0]) + len(cols[0])) // c
        if full > self._full:
            row = sum(dc.dtype.itemsize for dc in self._done_cols)
            # ahead: up to four chunks, no more than the workflow's tasks can fill (a
            # run whose tasks all succeed at once, on one rank each, ends where its
            # reserve does: close() has nothing to free)
            left = -(-int(self.wf.ntasks) // c) - full
            self._reserve((full - self._full) * c * row, max(min(4, left), 0) * c * row)
        # a chunk is written inside the extent only; the extent never shrinks (a
        # tail written earlier stays readable until its chunk is rewritten whole)
        ext = max(self._done_cols[0].n, full * c)
        for dc in self._done_cols:
            dc.grow(ext)
        for i, (ds, col) in enumerate(zip(self.done_ds, cols)):
            col = np.ascontiguousarray(col, dtype=self._done_cols[i].dtype)
            t, k, pos = self._tails[i], self._full, 0
            if len(t) and len(t) + len(col) >= c:
                pos = c - len(t)
                ds.id.write_direct_chunk((k * c,), np.concatenate([t, col[:pos]]))
                t = t[:0]
                k += 1
            while len(col) - pos >= c:
                ds.id.write_direct_chunk((k * c,), col[pos:pos + c])
                pos += c
                k += 1
            rest = col[pos:]
            self._tails[i] = np.concatenate([t, rest]) if len(t) else rest.copy()
        self._full = full
        self._tail_written = not len(self._tails[0])

    def _write_tail(self) -> None:
        """Write the entries past the last whole chunk (one chunk, padded)."""
        c, n = self._chunk, len(self._tails[0])
        if n and not self._done_failed:
            # one buffer for the three columns (each chunk is copied out by its write):
            # kept, as fresh memory costs a page fault per 4 KiB, 0.2 ms a column
            size = c * max(dc.dtype.itemsize for dc in self._done_cols)
            if self._pad is None or len(self._pad) < size:
                self._pad = np.empty(size, dtype=np.uint8)
            for (name, _, _), ds, dc, t in zip(DONE_FIELDS, self.done_ds, self._done_cols,
                                               self._tails):
                dc.grow(self._full * c + n)
                buf = self._pad[:c * dc.dtype.itemsize].view(dc.dtype)
                buf[:n] = t
                buf[n:] = _DONE_FILL.get(name, 0)  # the columns' fill values
                ds.id.write_direct_chunk((self._full * c,), buf)
        self._tail_written = True

    @property
    def makespan(self) -> float:
        """Latest end minus earliest start of the rows written so far (0 if none)."""
        lo, hi = self.span
        return hi - lo if hi >= lo else 0.0

    def close(self, complete: bool = True, **summary: Any) -> None:
        """Flush, record the summary attributes (``makespan`` defaults to the rows'
        first start to last end) and ``complete``, close the file."""
        if not self.f.id.valid:
            return
        failed: BaseException | None = None
        try:
            self.flush()
        except BaseException as exc:  # still end the thread and close the file
            failed = exc
        try:
            self._stop_thread()
        except BaseException as exc:
            failed = failed or exc
        if failed is not None:  # the file is still closed, marked incomplete
            complete = False
            summary.setdefault("error", f"{type(failed).__name__}: {failed}")
            try:
                self._close_file(complete, summary)
            except Exception:  # the first failure is the one to report
                try:
                    self.f.close()
                except Exception:
                    pass
            finally:
                self._unreserve()
            raise failed
        try:
            self._close_file(complete, summary)
        finally:
            self._unreserve()

    def _close_file(self, complete: bool, summary: dict[str, Any]) -> None:
        if "makespan" not in summary:
            if self.span[1] >= self.span[0] or not self.tasks.shape[0]:
                summary["makespan"] = self.makespan
            else:  # rows written to the dataset directly, not through this writer
                t = self.tasks[:]
                summary["makespan"] = float(t["ended"].max() - t["started"].min())
        for k, v in summary.items():
            self.set_attr(k, v)
        self.g.attrs["complete"] = bool(complete)
        self.g.attrs["end_time"] = time.time()
        self.f.close()  # H5Fclose flushes

    def _stop_thread(self) -> None:
        """Let the writer thread finish what it holds, then end it."""
        if self._thread is None or self._jobs is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None
        self._jobs = None
        if self._failed is not None:
            exc, self._failed = self._failed, None
            raise TraceError(f"{self.path}: trace write failed: {exc}") from exc


class _Column:
    """A 1-D dataset only this writer grows, its length and types kept here: h5py's
    ``shape`` and ``resize`` ask HDF5 each time (~60 us a call in a run, where a flush
    meets cold caches, several per flush)."""

    __slots__ = ("ds", "n", "dtype", "mtype")

    def __init__(self, ds: Any, dtype: Any = None) -> None:
        """``dtype``: of a dataset just created empty with it (h5py's ``shape`` and
        ``dtype`` are not asked: ~40 us a column in start())."""
        self.ds = ds
        self.n = int(ds.shape[0]) if dtype is None else 0
        self.dtype = ds.dtype if dtype is None else np.dtype(dtype)
        # compound rows go with the file's own type: the bytes are laid out alike and
        # HDF5 copies them (numpy's compound type is converted field by field: a
        # third slower); variable-length strings need the conversion
        self.mtype = ds.id.get_type() if self.dtype.names and not self.dtype.hasobject \
            else None

    def grow(self, n: int) -> None:
        """Extend the dataset to ``n`` entries (never shrinks it)."""
        if n > self.n:
            self.ds.id.set_extent((n,))
            self.n = n

    def append(self, arr: np.ndarray) -> int:
        """Append ``arr``: one extent change and one H5Dwrite of the contiguous buffer
        (h5py's low-level calls). Returns the new length."""
        n0, n = self.n, len(arr)
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        self.grow(n0 + n)
        try:
            fspace = self.ds.id.get_space()
            fspace.select_hyperslab((n0,), (n,))
            self.ds.id.write(_h5().h5s.create_simple((n,)), fspace, arr, mtype=self.mtype)
        except (AttributeError, TypeError):  # pragma: no cover - other h5py builds
            self.ds[n0:] = arr
        return self.n


def _index_names(prefix: bytes, idx: np.ndarray) -> np.ndarray:
    """``prefix[i]`` for every ``i`` in ``idx`` (non-negative), built digit by digit in
    a byte matrix: no Python string per row on the trace's flush path."""
    n, lp = len(idx), len(prefix)
    v = idx.astype(np.int64)
    nd = np.ones(n, dtype=np.int64)  # decimal digits of each index
    p = 10
    while n:
        more = v >= p
        if not more.any():
            break
        nd += more
        p *= 10
    maxd = int(nd.max()) if n else 1
    width = lp + maxd + 2
    buf = np.zeros((n, width), dtype=np.uint8)
    if lp:
        buf[:, :lp] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, lp] = ord("[")
    rows = np.arange(n)
    for k in range(maxd):  # k-th digit from the right sits at column lp + nd - k
        m = nd > k
        buf[rows[m], (lp + nd - k)[m]] = 48 + (v % 10)[m]
        v = v // 10
    buf[rows, lp + nd + 1] = ord("]")
    return buf.view(f"S{width}").ravel()


# ====================================================================== reading
@dataclasses.dataclass
class Trace:
    """One run read back from a trace file.

    Attributes:
        path: the file.
        run: run group index.
        attrs: run attributes (JSON text decoded).
        tasks: structured array of task-attempt rows (TASK_DTYPE).
        sets: list of dicts, one per set.
        workers: list of dicts, one per worker.
        set_edges: (k, 3) array of (parent, child, kind).
        task_edges: (k, 2) array.
        errors: list of dicts.
    """

    path: str
    run: int
    attrs: dict[str, Any]
    tasks: np.ndarray
    sets: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    set_edges: np.ndarray
    task_edges: np.ndarray
    errors: list[dict[str, Any]]

    @property
    def partial(self) -> bool:
        """The run did not end cleanly (killed, or still running)."""
        return not bool(self.attrs.get("complete", False))

    @property
    def simulated(self) -> bool:
        """Written by the simulator."""
        return bool(self.attrs.get("simulated", False))

    @property
    def mode(self) -> str:
        """The run's mode string."""
        return str(self.attrs.get("mode", "?"))


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _rows(arr: np.ndarray) -> list[dict[str, Any]]:
    names = arr.dtype.names or ()
    return [{n: _decode(r[n]) for n in names} for r in arr]


def nruns(path: str) -> int:
    """Number of run groups in a trace file.

    Raises:
        TraceError: the file is missing or not an mpiwf trace.
    """
    f = _check_open(path)
    try:
        return len(f["runs"])
    finally:
        f.close()


#: what reading a hand-edited or damaged file can raise (a missing dataset, a field
#: of another type, a negative count, a dataset where a group belongs, ...)
_DAMAGE = (KeyError, OSError, ValueError, TypeError, IndexError, AttributeError)


def _damaged(path: str, exc: BaseException, run: Any = None) -> TraceError:
    """The one line for a damaged trace: what reading it raised, and in which run."""
    where = f"run {run}: " if run is not None else ""
    return TraceError(f"{path}: damaged trace ({where}{type(exc).__name__}: {exc})")


def _check_open(path: str) -> Any:
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such file")
    try:
        f = _open(path, "r")
    except OSError:
        raise TraceError(f"{path}: not an HDF5 file (or damaged)") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise TraceError(f"{path}: not an mpiwf trace")
    if "runs" in f and not isinstance(f["runs"], _h5().Group):
        f.close()
        raise TraceError(f"{path}: damaged trace (/runs is not a group)")
    if "runs" not in f or not len(f["runs"]):
        f.close()  # created by a run that ended before its first tasks went out
        raise TraceError(f"{path}: an mpiwf trace that holds no run")
    return f


def load(path: str, run: int = -1) -> Trace:
    """Read one run of a trace (the last one by default).

    Raises:
        TraceError: missing file, not an mpiwf trace, no such run, or a damaged run
            (a dataset missing or of another type, a ``tasks`` table beside a
            ``done`` group without every field of ROW_DTYPE, ...).
    """
    f = _check_open(path)
    try:
        runs = f["runs"]
        try:
            keys = sorted(runs, key=int)
        except (ValueError, TypeError, AttributeError):
            raise TraceError(f"{path}: damaged trace (run groups not numbered)") from None
        try:
            key = keys[run]
        except IndexError:
            raise TraceError(f"{path}: has {len(keys)} run(s), no run {run}") from None
        try:
            g = runs[key]
            attrs = {k: _decode(v) for k, v in g.attrs.items()}
            _check_count(attrs, "ntasks")
            stored = g["tasks"][:]
            sets = _rows(g["sets"][:])
            workers = _rows(g["workers"][:]) if "workers" in g else []
            if {"task", "set", "index", "worker"} <= set(stored.dtype.names or ()):
                # a table of ours (another one: analysis names the fields it lacks)
                _check_ids(stored["task"], sets, "tasks table")
                if len(stored) and stored["set"].min() < 0:
                    raise ValueError(f"tasks table: negative set id {int(stored['set'].min())}")
                if len(stored) and stored["set"].max() >= len(sets):
                    raise ValueError(f"tasks table: set id {int(stored['set'].max())} past "
                                     f"the sets table ({len(sets)} set(s))")
            if "done" in g:
                _check_row_fields(stored)
                stored = _merge_done(stored, g["done"], sets, workers,
                                     float(attrs.get("start_time") or 0.0))
            tasks = _with_derived(stored, sets, workers)
            se = g["set_edges"][:] if "set_edges" in g else np.zeros((0, 3), "<i8")
            te = g["task_edges"][:] if "task_edges" in g else np.zeros((0, 2), "<i8")
            for name, arr, cols in (("set_edges", se, 3), ("task_edges", te, 2)):
                if arr.size and (arr.ndim != 2 or arr.shape[1] != cols):
                    raise ValueError(f"{name} has shape {arr.shape}, not (rows, {cols})")
            errors = _rows(g["errors"][:]) if "errors" in g else []
        except _DAMAGE as exc:
            raise _damaged(path, exc) from None
        return Trace(path, int(key), attrs, tasks, sets, workers, se, te, errors)
    finally:
        f.close()


def _check_count(attrs: dict[str, Any], key: str) -> None:
    """Raise ValueError if run attribute ``key``, where present, is not a whole number."""
    v = attrs.get(key)
    if v is not None and not (isinstance(v, (int, np.integer)) and not isinstance(v, bool)):
        raise ValueError(f"run attribute {key} is {v!r}, not a whole number")


def _check_ids(task: np.ndarray, sets: list[dict[str, Any]], where: str) -> None:
    """Raise ValueError for a task id that no set of the sets table holds (ids are dense
    from 0, set after set): a damaged file's, which analysis would size arrays by."""
    if not len(task):
        return
    total = sum(max(int(s["n"]), 0) for s in sets)
    lo, hi = int(task.min()), int(task.max())
    if lo < 0 or hi >= total:
        raise ValueError(f"{where}: task id {lo if lo < 0 else hi} is not one of the "
                         f"{total} task(s) of the sets table")


def _check_row_fields(stored: np.ndarray) -> None:
    """Raise ValueError if the ``tasks`` table of a run with a ``done`` group lacks a
    field of ROW_DTYPE (an empty or wrong-type dataset in its place): every writer of
    that format stores them all, and the merge would fill the missing ones with zeros
    where analysis could no longer name them."""
    names = set(stored.dtype.names or ())
    missing = [n for n in ROW_DTYPE.names or () if n not in names]
    if missing:
        raise ValueError(f"tasks table lacks field(s) {', '.join(missing)}")


def _done_count(done: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ``batches`` rows of a ``done`` group and the task ids of the entries written:
    no more than they count (they may count entries still held in memory by a run
    that was killed) and every column holds, up to the first never written (task
    -1: the columns grew, their chunk did not reach the file)."""
    b = done["batches"][:]
    n = int(b["n"].sum(dtype=np.int64))
    names = DONE_FIELDS_3 if "started" in done else [k for k, _, _ in DONE_FIELDS]
    n = min([n] + [done[k].shape[0] for k in names])
    task = done["task"][:n]
    hole = np.flatnonzero(task < 0)
    return b, task[:hole[0]] if len(hole) else task


def _log_times(log: np.ndarray, task: np.ndarray) -> np.ndarray:
    """Per task in ``task``, the time of the last LOG_DTYPE row that holds it (NaN if
    none)."""
    out = np.full(len(task), np.nan)
    if not len(log) or not len(task):
        return out
    first, end = log["first"].astype(np.int64), log["end"].astype(np.int64)
    if first.min() < 0:
        raise ValueError(f"a log of task runs holds task id {int(first.min())}")
    # only the ids of ``task`` are looked up: the part of a run past them (tasks that
    # did not end done, or a damaged file's id) is cut, so the arrays below stay the
    # size of the workflow
    size = int(max(task.max() + 1, 1))
    first, end = np.minimum(first, size), np.minimum(end, size)
    lengths = np.maximum(end - first, 0)
    ids = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths - first,
                                                    lengths)
    at = np.full(size, np.nan)
    at[ids] = np.repeat(log["time"], lengths)
    again = np.bincount(ids, minlength=size)[ids] > 1
    if again.any():
        # a task sent (made ready) again: its last row counts. numpy does not promise
        # the order of an assignment with repeated indices, so the rows holding such
        # a task are applied once more, in order
        for r in np.unique(np.repeat(np.arange(len(log)), lengths)[again]).tolist():
            at[first[r]:end[r]] = log["time"][r]
    ok = (task >= 0) & (task < size)
    out[ok] = at[task[ok]]
    return out


def _merge_done(stored: np.ndarray, done: Any, sets: list[dict[str, Any]],
                workers: list[dict[str, Any]], start_time: float = 0.0) -> np.ndarray:
    """The ``tasks`` rows and the ``done`` group's entries as rows (ROW_DTYPE), in
    the order rank 0 received them."""
    b, task = _done_count(done)
    n = len(task)
    if not n:
        return stored
    _check_ids(task, sets, "done group")
    out = np.zeros(n, dtype=ROW_DTYPE)
    out["task"] = task
    counts = b["n"].astype(np.int64)
    out["received"] = np.repeat(b["received"], counts)[:n]
    out["worker"] = rank = np.repeat(b["worker"], counts)[:n]
    if "started" in done:  # format 3: the times as stored
        for k in DONE_FIELDS_3[1:]:
            out[k] = done[k][:n]
    else:
        _derive_times(out, done, n, np.repeat(b["offset"], counts)[:n], start_time)
    out["status"] = DONE
    out["nworkers"] = 1
    # set, index, cores and GPUs from the sets table
    if sets:
        tbl = sorted(sets, key=lambda r: int(r["offset"]))
        offs = np.array([int(r["offset"]) for r in tbl], dtype=np.int64)
        pos = np.maximum(np.searchsorted(offs, out["task"], side="right") - 1, 0)
        for col, key in (("set", "sid"), ("cores", "cores"), ("gpus", "gpus"),
                         ("created", "created")):
            out[col] = np.array([r.get(key) or 0 for r in tbl])[pos]
        out["index"] = out["task"] - offs[pos]
    # the node from the workers table (-1 for a rank it lacks)
    node = {int(w["rank"]): int(w["node"]) for w in workers}
    ranks, inv = np.unique(rank, return_inverse=True)
    out["node"] = np.array([node.get(int(r), -1) for r in ranks.tolist()],
                           dtype=np.int32)[inv.ravel()]
    if len(stored):
        if stored.dtype != ROW_DTYPE:  # by field name, never by position
            rows = np.zeros(len(stored), dtype=ROW_DTYPE)
            for k in set(ROW_DTYPE.names or ()) & set(stored.dtype.names or ()):
                rows[k] = stored[k]
            stored = rows
        out = np.concatenate([stored, out])
        out = out[np.argsort(out["received"], kind="stable")]
    return out


def _derive_times(out: np.ndarray, done: Any, n: int, off: np.ndarray,
                  start_time: float) -> None:
    """Format 4: the times of ``done`` entries as the per-row path records them."""
    d = _log_times(done["dispatches"][:], out["task"])
    s = done["start"][:n] - off - start_time
    # dispatched <= started <= ended <= received (rank 0's clock bounds the worker's)
    s = np.fmax(s, d)
    e = np.minimum(s + done["duration"][:n], out["received"])
    out["started"] = np.minimum(s, e)
    out["ended"] = e
    out["dispatched"] = d
    out["ready"] = _log_times(done["readies"][:], out["task"])


def _with_derived(stored: np.ndarray, sets: list[dict[str, Any]],
                  workers: list[dict[str, Any]]) -> np.ndarray:
    """The loaded rows (TASK_DTYPE): format 1 rows as stored, format 2 rows with
    ``name`` built from the sets table and ``host`` from the workers table."""
    names = stored.dtype.names or ()
    if not {"set", "index", "worker"} <= set(names):
        return stored  # not a task table of ours: analysis names what is missing
    if "name" in names and "host" in names:
        if stored.dtype == TASK_DTYPE:
            return stored
        out = np.zeros(len(stored), dtype=TASK_DTYPE)
        for n in TASK_DTYPE.names or ():
            if n in names:
                out[n] = stored[n]
        return out
    out = np.zeros(len(stored), dtype=TASK_DTYPE)
    for n in names:
        if n in (TASK_DTYPE.names or ()):
            out[n] = stored[n]
    if not len(stored):
        return out
    sids, idx = stored["set"].astype(np.int64), stored["index"]
    nsid = max(int(sids.max()) + 1, max((int(s["sid"]) + 1 for s in sets), default=0))
    # per set id: its name and whether it holds one task (a set missing from the
    # table, which a damaged file may have, is named by its id)
    set_names = [str(k).encode() for k in range(nsid)]
    single = np.zeros(nsid, dtype=bool)
    for s in sets:
        set_names[int(s["sid"])] = str(s["name"]).encode()
        single[int(s["sid"])] = int(s["n"]) == 1
    col = out["name"]
    one = single[sids]  # one-task sets (every mpiwf.futures submit): a lookup
    if one.any():
        col[one] = np.array(set_names, dtype="S64")[sids[one]]
    many = np.flatnonzero(~one)
    if len(many):  # the rest one set at a time, each a slice of the rows sorted by set
        order = many[np.argsort(sids[many], kind="stable")]
        ss = sids[order]
        cut = np.flatnonzero(np.diff(ss)) + 1
        for part in np.split(order, cut):
            name = set_names[int(sids[part[0]])]
            col[part] = _index_names(name, idx[part]).astype("S64")
    hosts = {int(w["rank"]): str(w.get("host") or "").encode()[:64] for w in workers}
    ranks, inv = np.unique(stored["worker"], return_inverse=True)
    out["host"] = np.array([hosts.get(int(r), b"") for r in ranks.tolist()],
                           dtype="S64")[inv.ravel()]
    return out


def runs_info(path: str) -> list[dict[str, Any]]:
    """What a resume checks of each run of a trace, without reading its task rows:
    ``workflow``, ``ntasks``, ``simulated`` and ``sets`` (each set's name and task
    count, in order).

    Raises:
        TraceError: missing file, not an mpiwf trace, or a damaged run group.
    """
    f = _check_open(path)
    try:
        out = []
        for key in f["runs"]:
            g = f["runs"][key]
            try:
                a = g.attrs
                sets = g["sets"][:]
                out.append(dict(
                    run=key, workflow=_decode(a.get("workflow")), ntasks=_decode(a.get("ntasks")),
                    simulated=bool(a.get("simulated", False)),
                    sets=[(str(_decode(r["name"])), int(r["n"])) for r in sets]))
            except _DAMAGE as exc:
                raise _damaged(path, exc, key) from None
        return out
    finally:
        f.close()


def done_tasks(path: str) -> set[int]:
    """Ids of the tasks recorded done in any run of a trace (for ``--resume``)."""
    f = _check_open(path)
    try:
        out: set[int] = set()
        for key in f["runs"]:
            try:
                g = f["runs"][key]
                t = g["tasks"][:]
                out.update(t["task"][t["status"] == DONE].tolist())
                if "done" in g:
                    out.update(_done_count(g["done"])[1].tolist())
            except _DAMAGE as exc:
                raise _damaged(path, exc, key) from None
        return out
    finally:
        f.close()
