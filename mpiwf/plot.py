"""Plots of traces as PNG (matplotlib, Agg backend: no display needed).

Three kinds, each with one panel per trace stacked on one time axis (seconds since
each run's first task start, so runs compare side by side):

* ``gantt`` — one row per worker (gang leader), a bar per attempt, coloured by set;
* ``utilization`` — CPU and GPU utilization over time, with the run's averages;
* ``concurrency`` — attempts running and ready-but-waiting over time.

This module never imports mpi4py; matplotlib is imported on first use (``plot``
extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import analysis as an
from .errors import MpiwfError
from .trace import Trace

KINDS = ("gantt", "utilization", "concurrency")
#: Above this many steps a series is drawn as time-averaged bins (exact averages).
MAX_STEPS = 4000
#: Above this many attempts a Gantt chart is painted as an image instead of bars.
MAX_BARS = 20000
#: The largest figure drawn, in pixels: matplotlib's limit each way, and in all (an
#: RGBA buffer of 1 GiB).
MAX_SIDE, MAX_PIXELS = 2**16 - 1, 2**28
_CPU, _GPU = "#1f77b4", "#d62728"


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MpiwfError("plotting needs matplotlib: pip install 'mpiwf[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _origin(tr: Trace) -> float:
    t = tr.tasks
    s = t["started"][np.isfinite(t["started"]) & np.isfinite(t["ended"])]
    return float(s.min()) if len(s) else 0.0


def _label(tr: Trace, s: dict[str, Any] | None = None) -> str:
    ms = an.makespan(tr.tasks)
    wf = tr.attrs.get("workflow", "?")
    extra = " (simulated)" if tr.simulated else ""
    part = " [PARTIAL]" if tr.partial else ""
    return f"{wf} — {tr.mode}{extra}{part} — makespan {ms:.1f} s"


def _series(times: np.ndarray, values: np.ndarray, t0: float,
            span: float) -> tuple[np.ndarray, np.ndarray]:
    """A step series ready for ``step(where="post")``, binned when it is long."""
    x = times - t0
    if len(x) <= MAX_STEPS:
        return np.concatenate([[0.0], x]), np.concatenate([[0.0], values])
    edges = np.linspace(0.0, max(span, 1e-12), MAX_STEPS // 2 + 1)
    v = an.binned(x, values, edges)
    return edges, np.concatenate([v, [0.0]])


def _colors(traces: Sequence[Trace]) -> dict[str, Any]:
    plt = _plt()
    names: list[str] = []
    for tr in traces:
        for s in tr.sets:
            if str(s["name"]) not in names:
                names.append(str(s["name"]))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _suptitle(traces: Sequence[Trace], what: str) -> str:
    if len(traces) == 1:
        return f"{what}: {_label(traces[0])}"
    t = [an.makespan(tr.tasks) for tr in traces]
    parts = [f"{what}: {' vs '.join(tr.mode for tr in traces)}"]
    if t[0] > 0:
        # no I against a resumed run: its makespan does not cover the workflow
        parts.append(", ".join(f"I({tr.mode}) n/a (resumed)" if _resumed(traces[0], tr)
                               else f"I({tr.mode}) = {100 * (1 - ti / t[0]):.1f} %"
                               for tr, ti in zip(traces[1:], t[1:])))
    return " — ".join(parts)


def _resumed(*traces: Trace) -> bool:
    """Whether any of ``traces`` is a resume that counted tasks done from an earlier
    trace (see analysis.compare)."""
    return any(an.resumed_count(tr.attrs) for tr in traces)


def _gantt(ax: Any, tr: Trace, colors: dict[str, Any], span: float) -> list[Any]:
    t = tr.tasks
    ok = np.isfinite(t["started"]) & np.isfinite(t["ended"]) & (t["worker"] >= 0)
    r = t[ok]
    t0 = _origin(tr)
    ranks, row = np.unique(r["worker"], return_inverse=True)
    nrows = max(len(ranks), 1)
    # bar thickness in points: fill the axis height without overlapping rows
    h_pt = ax.get_window_extent().height * 72 / ax.figure.dpi
    lw = float(np.clip(0.8 * h_pt / nrows, 0.3, 12.0))
    names = {int(s["sid"]): str(s["name"]) for s in tr.sets}
    failed = np.isin(r["status"], an.FAILED_STATUSES)
    sids = np.unique(r["set"]).tolist()
    handles = [_patch(colors.get(names.get(k, str(k)), "gray"), names.get(k, str(k)))
               for k in sids]
    if failed.any():
        handles.append(_patch("black", "failed attempt"))
    if len(r) > MAX_BARS:
        _gantt_raster(ax, r, row, nrows, t0, span, [colors.get(names.get(k, str(k)), "gray")
                                                     for k in sids], sids, failed)
    else:
        for sid in sids:
            m = (r["set"] == sid) & ~failed
            nm = names.get(sid, str(sid))
            if m.any():
                ax.hlines(row[m], r["started"][m] - t0, r["ended"][m] - t0,
                          colors=[colors.get(nm, "gray")], linewidth=lw)
        if failed.any():
            ax.hlines(row[failed], r["started"][failed] - t0, r["ended"][failed] - t0,
                      colors="black", linewidth=lw, linestyles="dotted")
    ax.set_ylim(-1, nrows)
    ax.set_ylabel(f"worker: {len(ranks)} ran tasks\n(gang leaders)")
    if len(ranks) <= 16:
        ax.set_yticks(range(len(ranks)), [f"rank {k}" for k in ranks.tolist()])
    else:
        ax.set_yticks([])
    return handles


def _gantt_raster(ax: Any, r: np.ndarray, row: np.ndarray, nrows: int, t0: float,
                  span: float, palette: list[Any], sids: list[int],
                  failed: np.ndarray) -> None:
    """Paint a large Gantt chart as an image: one pixel column per time bin, one
    pixel row per worker (or group of workers), the set of the attempt that holds it.

    Painting costs O(attempts + pixels), where a million separate bars would take
    matplotlib minutes; bars shorter than a bin still get one pixel.
    """
    from matplotlib.colors import to_rgba

    nb = 2000
    ny = min(nrows, 1500)
    y = row * ny // max(nrows, 1)
    scale = nb / max(span, 1e-12)
    b0 = np.clip(np.floor((r["started"] - t0) * scale), 0, nb - 1).astype(np.int64)
    b1 = np.clip(np.ceil((r["ended"] - t0) * scale), 0, nb).astype(np.int64)
    lens = np.maximum(b1 - b0, 1)
    code = np.searchsorted(np.array(sids), r["set"]).astype(np.int16)
    code[failed] = len(sids)  # black
    total = int(lens.sum())
    first = np.repeat(np.cumsum(lens) - lens, lens)
    cols = np.repeat(b0, lens) + (np.arange(total) - first)
    img = np.full((ny, nb), -1, dtype=np.int16)
    img[np.repeat(y, lens), np.minimum(cols, nb - 1)] = np.repeat(code, lens)
    # palette: the sets, black for failures, then white at index -1 (empty)
    pal = np.array([to_rgba(c) for c in palette] + [(0, 0, 0, 1), (1, 1, 1, 0)])
    ax.imshow(pal[img], aspect="auto", interpolation="nearest", origin="lower",
              extent=(0, nb / scale, -0.5, nrows - 0.5))


def _patch(color: Any, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=color, label=label)


def _utilization(ax: Any, tr: Trace, span: float) -> list[Any]:
    u = an.utilization_series(tr)
    t0 = _origin(tr)
    cores, gpus = an.totals(tr)
    avg = an.utilization(tr.tasks, cores, gpus)
    for key, color, total in (("cpu", _CPU, cores), ("gpu", _GPU, gpus)):
        if not total:
            continue
        x, y = _series(u["times"], 100 * u[key], t0, span)
        name = key.upper()
        ax.step(x, y, where="post", color=color, linewidth=1.4,
                label=f"{name}: {total} {'cores' if key == 'cpu' else 'GPUs'}, "
                f"mean {100 * avg[key]:.1f} %")
        ax.fill_between(x, y, step="post", color=color, alpha=0.15, linewidth=0)
        ax.axhline(100 * avg[key], color=color, linestyle="--", linewidth=0.9,
                   label=f"{name} mean over the makespan")
    ax.set_ylim(0, 105)
    ax.set_ylabel("utilization (%)")
    return []


def _concurrency(ax: Any, tr: Trace, span: float) -> list[Any]:
    c = an.concurrency(tr)
    t0 = _origin(tr)
    for key, color, label in (("running", "#2ca02c", "running"),
                              ("waiting", "#ff7f0e", "ready, waiting for resources")):
        x, y = _series(c["times"], c[key].astype(float), t0, span)
        ax.step(x, y, where="post", color=color, linewidth=1.4,
                label=f"{label} (max {int(c[key].max()) if len(c[key]) else 0})")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("tasks")
    return []


def plot(traces: Sequence[Trace], kind: str, path: str, *, width: float = 11.0,
         dpi: int = 120) -> str:
    """Draw ``kind`` for one or more runs, stacked on one time axis, into a PNG.

    Args:
        traces: the runs (the first is the baseline of the title's I).
        kind: one of :data:`KINDS`.
        path: output file (PNG; the extension picks another format).
        width: figure width in inches.
        dpi: resolution.

    Returns:
        The path written: ``path``, with ``.png`` added when it has no extension.

    Raises:
        MpiwfError: unknown kind, no traces, a format matplotlib cannot write, a
            figure too large, matplotlib missing or the file cannot be written.
    """
    if kind not in KINDS:
        raise MpiwfError(f"--kind: unknown plot kind {kind!r} (one of {', '.join(KINDS)})")
    if not traces:
        raise MpiwfError("plot: no traces")
    for tr in traces:
        an.check(tr)
    plt = _plt()
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = os.path.splitext(path)[1][1:].lower()
    if not fmt:  # matplotlib's own rule: PNG, and the name gets the extension
        fmt, path = "png", path.rstrip(".") + ".png"
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if fmt not in formats:
        raise MpiwfError(f"{path}: unsupported format {fmt!r} (the extension must be one of "
                         f"{', '.join(formats)})")
    n = len(traces)
    height = {"gantt": 3.6, "utilization": 2.6, "concurrency": 2.4}[kind]
    w_px, h_px = width * dpi, (1.0 + height * n) * dpi
    if not (w_px <= MAX_SIDE and h_px <= MAX_SIDE and w_px * h_px <= MAX_PIXELS):
        raise MpiwfError(f"a figure of {w_px:.0f} x {h_px:.0f} pixels is too large (at most "
                         f"{MAX_SIDE} each way and {MAX_PIXELS} in all): lower --width, "
                         "--dpi or the number of traces")
    fig, axes = plt.subplots(n, 1, figsize=(width, 1.0 + height * n), sharex=True,
                             squeeze=False, dpi=dpi)
    span = max(an.makespan(tr.tasks) for tr in traces)
    colors = _colors(traces)
    what = {"gantt": "Tasks by worker", "utilization": "CPU and GPU utilization",
            "concurrency": "Concurrency"}[kind]
    handles: list[Any] = []
    for ax, tr in zip(axes[:, 0], traces):
        if kind == "gantt":
            handles = _gantt(ax, tr, colors, span) or handles
        elif kind == "utilization":
            _utilization(ax, tr, span)
        else:
            _concurrency(ax, tr, span)
        ax.set_title(_label(tr), fontsize=10, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        if kind != "gantt":
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                      framealpha=0.9)
        ax.axvline(an.makespan(tr.tasks), color="gray", linewidth=0.8, linestyle=":")
    base = an.makespan(traces[0].tasks)
    for ax, tr in zip(axes[1:, 0], traces[1:]):
        ms = an.makespan(tr.tasks)
        # what the baseline still had to do: the saving (none against a resumed run)
        if base > 0 and ms < base and not _resumed(traces[0], tr):
            ax.axvspan(ms, base, color="#2ca02c", alpha=0.08, linewidth=0)
            ax.text((ms + base) / 2, 0.55, f"{traces[0].mode}\nends at {base:.0f} s:\n"
                    f"{base - ms:.0f} s ({100 * (1 - ms / base):.1f} %)\nsaved",
                    transform=ax.get_xaxis_transform(), ha="center", va="center",
                    fontsize=9, color="#1a6e1a")
        ax.axvline(base, color="black", linewidth=0.8, linestyle=":")
    axes[-1, 0].set_xlim(0, span * 1.02 if span > 0 else 1.0)
    axes[-1, 0].set_xlabel("time since first task start (s)")
    if kind == "gantt" and handles:
        fig.legend(handles=handles, loc="upper right", ncol=min(len(handles), 8), fontsize=8,
                   bbox_to_anchor=(0.99, 0.985 - 0.25 / (1.0 + height * n)))
    fig.suptitle(_suptitle(traces, what), fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97 if kind != "gantt" else 0.93))
    try:
        fig.savefig(path, format=fmt)
    except OSError as exc:
        raise MpiwfError(f"{path}: cannot write ({exc.strerror})") from None
    except RuntimeError as exc:  # pgf without its TeX system
        raise MpiwfError(f"{path}: cannot write {fmt} ({exc})") from None
    finally:
        plt.close(fig)
    return path
