"""Science kernels of a small DeepDriveMD-style workflow: MD, aggregation, training, inference."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ENERGY_DRIFT_TOLERANCE",
    "aggregate",
    "contact_map",
    "embed",
    "features",
    "infer",
    "simulate",
    "train",
    "xp",
]

PathLike = str | os.PathLike[str]
FloatArray = NDArray[np.float64]

#: Relative NVE energy error |E_t - E_0| / |E_0| that ``simulate`` stays below with its
#: default parameters. Measured: at most about 3e-3 over seeds 0-9 (it is the O(dt**2)
#: velocity-Verlet fluctuation of the stiff bonds; halving dt cuts it about fourfold).
ENERGY_DRIFT_TOLERANCE = 1e-2

_ENERGY_COLUMNS = ("total", "kinetic", "potential")


# --------------------------------------------------------------------------- backends


def xp(use_gpu: bool) -> ModuleType:
    """Return the array module to compute with.

    CuPy is imported lazily, only when ``use_gpu`` is true, so that this module
    imports on machines without CuPy or without a GPU.

    Args:
        use_gpu: Whether to compute on the GPU with CuPy.

    Returns:
        ``numpy`` when ``use_gpu`` is false, otherwise ``cupy``.

    Raises:
        RuntimeError: If ``use_gpu`` is true and CuPy cannot be imported or sees no GPU.
    """
    if not use_gpu:
        return np
    try:
        cp = importlib.import_module("cupy")
        n_devices = int(cp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # ImportError, or CUDA runtime errors without a device
        raise RuntimeError(f"CuPy is not available (use_gpu=True): {exc}") from exc
    if n_devices < 1:
        raise RuntimeError("CuPy is not available (use_gpu=True): no CUDA device found")
    return cp


def _to_numpy(a: Any) -> Any:
    """Return ``a`` as a NumPy array (copying from the GPU for CuPy arrays)."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    return np.asarray(a)


# --------------------------------------------------------------------------- MD


def contact_map(coords: FloatArray, cutoff: float = 1.5) -> NDArray[np.uint8]:
    """Contact maps of one or more chain conformations.

    Args:
        coords: Coordinates, shape ``(n_beads, 3)`` or ``(frames, n_beads, 3)``.
        cutoff: Two beads are in contact when their distance is below ``cutoff``
            (in units of the Lennard-Jones sigma). The diagonal is always 1.

    Returns:
        ``uint8`` array of shape ``(n_beads, n_beads)`` or ``(frames, n_beads, n_beads)``.
    """
    x = np.asarray(coords, dtype=np.float64)
    d = x[..., :, None, :] - x[..., None, :, :]
    r2 = np.einsum("...k,...k->...", d, d)
    maps: NDArray[np.uint8] = (r2 < cutoff * cutoff).astype(np.uint8)
    return maps


def _random_chain(n_beads: int, bond_length: float, rng: np.random.Generator) -> FloatArray:
    """Build a seeded self-avoiding random-walk chain with fixed bond length."""
    x = np.zeros((n_beads, 3))
    for i in range(1, n_beads):
        for _ in range(1000):  # after 1000 rejections keep the last try
            v = rng.normal(size=3)
            cand = x[i - 1] + bond_length * v / np.linalg.norm(v)
            if i < 2 or np.min(np.linalg.norm(x[: i - 1] - cand, axis=1)) >= bond_length:
                break
        x[i] = cand
    centred: FloatArray = x - x.mean(axis=0)
    return centred


def _load_start(start: FloatArray | PathLike, start_frame: int) -> FloatArray:
    """Resolve ``simulate``'s ``start`` argument to an ``(n_beads, 3)`` array."""
    if isinstance(start, (str, os.PathLike)):
        with np.load(start) as data:
            arr = np.asarray(data["coords"], dtype=np.float64)
    else:
        arr = np.asarray(start, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[start_frame]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"start coordinates must have shape (n_beads, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("start coordinates contain non-finite values")
    return arr.copy()


class _ForceField:
    """Harmonic bonds plus shifted-force Lennard-Jones between non-bonded beads."""

    def __init__(self, n_beads: int, k_bond: float, r0: float, lj_cutoff: float) -> None:
        self.k_bond = k_bond
        self.r0 = r0
        self.rc = lj_cutoff
        idx = np.arange(n_beads)
        self.lj_pairs = np.abs(idx[:, None] - idx[None, :]) >= 2  # no LJ across bonds
        inv6 = lj_cutoff**-6
        self.v_c = 4.0 * (inv6 * inv6 - inv6)
        self.f_c = 24.0 * (2.0 * inv6 * inv6 - inv6) / lj_cutoff

    def __call__(self, x: FloatArray) -> tuple[FloatArray, float]:
        """Return forces ``(n_beads, 3)`` and the potential energy at positions ``x``."""
        d = x[:, None, :] - x[None, :, :]
        r2 = np.einsum("ijk,ijk->ij", d, d)
        mask = self.lj_pairs & (r2 < self.rc * self.rc)
        r2s = np.where(mask, r2, 1.0)
        r = np.sqrt(r2s)
        inv6 = r2s**-3
        inv12 = inv6 * inv6
        fmag = np.where(mask, 24.0 * (2.0 * inv12 - inv6) / r - self.f_c, 0.0)
        e_lj = np.where(mask, 4.0 * (inv12 - inv6) - self.v_c + (r - self.rc) * self.f_c, 0.0)
        forces = np.einsum("ij,ijk->ik", fmag / r, d)

        b = x[1:] - x[:-1]
        bl = np.sqrt(np.einsum("ij,ij->i", b, b))
        stretch = bl - self.r0
        fb = (-self.k_bond * stretch / bl)[:, None] * b  # force on bead i+1
        forces[1:] += fb
        forces[:-1] -= fb
        potential = 0.5 * float(e_lj.sum()) + 0.5 * self.k_bond * float(stretch @ stretch)
        return forces, potential


def simulate(
    out_path: PathLike,
    *,
    n_beads: int = 32,
    n_steps: int = 2000,
    dt: float = 0.005,
    seed: int = 0,
    start: FloatArray | PathLike | None = None,
    start_frame: int = 0,
    temperature: float = 1.0,
    save_every: int = 50,
    k_bond: float = 400.0,
    bond_length: float = 1.0,
    lj_cutoff: float = 2.5,
    contact_cutoff: float = 1.5,
) -> dict[str, Any]:
    """Run NVE molecular dynamics of a coarse-grained bead-spring chain.

    Reduced Lennard-Jones units (sigma = epsilon = mass = 1). Beads are joined by
    harmonic bonds ``k_bond / 2 * (r - bond_length)**2``; non-bonded pairs
    (``|i - j| >= 2``) interact through a shifted-force Lennard-Jones potential cut
    at ``lj_cutoff`` (energy and force both go to zero there, which keeps NVE energy
    conservation clean). Integration is velocity Verlet without a thermostat.
    Velocities are drawn from a Maxwell-Boltzmann distribution at ``temperature``
    (seeded), with centre-of-mass motion removed and rescaled to exactly
    ``temperature``; a restart therefore reuses the coordinates, not the velocities.

    With the defaults the relative energy error ``|E_t - E_0| / |E_0|`` stays below
    ``ENERGY_DRIFT_TOLERANCE`` (1e-2) at every saved frame; measured values are at
    most about 3e-3. The ratio is ill-conditioned if a start state happens to have
    ``E_0`` close to 0.

    Args:
        out_path: Output ``.npz`` path. It holds ``coords`` (frames, n_beads, 3),
            ``contact_maps`` (frames, n_beads, n_beads, uint8, 1 when the distance is
            below ``contact_cutoff``; the diagonal is 1), ``energies`` (frames, 3) with
            columns total, kinetic and potential, ``energy_columns``, ``steps`` and
            ``times`` of the saved frames, and ``initial_coords``. Frame 0 is the
            initial state.
        n_beads: Number of beads; must match ``start`` when it is given.
        n_steps: Number of MD steps.
        dt: Time step.
        seed: Seed of the initial chain (when ``start`` is None) and the velocities.
        start: Restart state: an ``(n_beads, 3)`` array, or a path to an ``.npz``
            whose ``coords`` is ``(n_beads, 3)`` or ``(frames, n_beads, 3)``.
            None starts from a seeded self-avoiding random walk.
        start_frame: Frame of ``start`` to use when it holds several frames.
        temperature: Initial temperature.
        save_every: Save a frame every this many steps.
        k_bond: Bond spring constant.
        bond_length: Bond rest length.
        lj_cutoff: Lennard-Jones cutoff.
        contact_cutoff: Contact distance for the contact maps.

    Returns:
        Summary with ``n_frames``, ``n_beads``, ``n_steps``, ``energy_drift``
        (relative, end vs start), ``max_energy_error`` (relative, largest over saved
        frames), ``final_temperature``, ``wall_time_s`` and ``out_path``.

    Raises:
        ValueError: On invalid sizes or a ``start`` of the wrong shape.
    """
    t0 = time.perf_counter()
    if n_steps < 0 or save_every < 1 or dt <= 0:
        raise ValueError("need n_steps >= 0, save_every >= 1 and dt > 0")
    rng = np.random.default_rng(seed)
    if start is None:
        if n_beads < 2:
            raise ValueError("need at least 2 beads")
        x = _random_chain(n_beads, bond_length, rng)
    else:
        x = _load_start(start, start_frame)
        if x.shape[0] != n_beads:
            raise ValueError(f"start has {x.shape[0]} beads but n_beads={n_beads}")
    x0 = x.copy()

    dof = 3 * n_beads - 3
    v = rng.normal(scale=np.sqrt(temperature), size=(n_beads, 3))
    v -= v.mean(axis=0)
    ke = 0.5 * float(np.einsum("ij,ij->", v, v))
    if ke > 0:
        v *= np.sqrt(0.5 * dof * temperature / ke)

    field = _ForceField(n_beads, k_bond, bond_length, lj_cutoff)
    f, pot = field(x)
    n_frames = n_steps // save_every + 1
    coords = np.empty((n_frames, n_beads, 3))
    energies = np.empty((n_frames, 3))
    steps = np.arange(n_frames) * save_every

    def record(frame: int) -> None:
        kin = 0.5 * float(np.einsum("ij,ij->", v, v))
        coords[frame] = x
        energies[frame] = (kin + pot, kin, pot)

    record(0)
    half_dt = 0.5 * dt
    for step in range(1, n_steps + 1):
        v += half_dt * f
        x += dt * v
        f, pot = field(x)
        v += half_dt * f
        if step % save_every == 0:
            record(step // save_every)

    e = energies[:, 0]
    scale = abs(e[0]) if e[0] != 0 else 1.0
    drift = float(abs(e[-1] - e[0]) / scale)
    max_err = float(np.max(np.abs(e - e[0])) / scale)
    np.savez(
        out_path,
        coords=coords,
        contact_maps=contact_map(coords, contact_cutoff),
        energies=energies,
        energy_columns=np.array(_ENERGY_COLUMNS),
        steps=steps,
        times=steps * dt,
        initial_coords=x0,
    )
    return {
        "n_frames": n_frames,
        "n_beads": n_beads,
        "n_steps": n_steps,
        "energy_drift": drift,
        "max_energy_error": max_err,
        "final_temperature": 2.0 * float(energies[-1, 1]) / dof,
        "wall_time_s": time.perf_counter() - t0,
        "out_path": os.fspath(out_path),
    }


# --------------------------------------------------------------------------- aggregation


def aggregate(in_paths: Sequence[PathLike], out_path: PathLike) -> dict[str, Any]:
    """Gather simulation outputs into one HDF5 file.

    Args:
        in_paths: ``.npz`` files written by ``simulate``; all with the same ``n_beads``.
        out_path: Output HDF5 path. It holds datasets ``contact_maps``
            (N, n, n, uint8), ``coords`` (N, n, 3, float64) and ``source`` (N, 2, int64:
            index into ``in_paths`` and frame index within that file), and attributes
            ``n_frames``, ``n_files``, ``n_beads`` and ``source_paths``.

    Returns:
        Summary with ``n_frames``, ``n_files``, ``n_beads``, ``frames_per_file`` and
        ``out_path``.

    Raises:
        ValueError: If ``in_paths`` is empty or the files disagree on ``n_beads``.
    """
    paths = [os.fspath(p) for p in in_paths]
    if not paths:
        raise ValueError("aggregate needs at least one input file")
    maps: list[NDArray[np.uint8]] = []
    coords: list[FloatArray] = []
    sources: list[NDArray[np.int64]] = []
    for i, p in enumerate(paths):
        with np.load(p) as data:
            c = np.asarray(data["coords"], dtype=np.float64)
            m = np.asarray(data["contact_maps"], dtype=np.uint8)
        if c.ndim != 3 or m.shape != (*c.shape[:2], c.shape[1]):
            raise ValueError(f"{p}: inconsistent coords {c.shape} / contact_maps {m.shape}")
        if coords and c.shape[1] != coords[0].shape[1]:
            raise ValueError(f"{p}: has {c.shape[1]} beads, expected {coords[0].shape[1]}")
        coords.append(c)
        maps.append(m)
        src = np.empty((c.shape[0], 2), dtype=np.int64)
        src[:, 0] = i
        src[:, 1] = np.arange(c.shape[0])
        sources.append(src)

    all_maps = np.concatenate(maps)
    n_frames, n_beads = all_maps.shape[0], all_maps.shape[1]
    with h5py.File(out_path, "w") as h5:
        h5.create_dataset("contact_maps", data=all_maps)
        h5.create_dataset("coords", data=np.concatenate(coords))
        h5.create_dataset("source", data=np.concatenate(sources))
        h5.attrs["n_frames"] = n_frames
        h5.attrs["n_files"] = len(paths)
        h5.attrs["n_beads"] = n_beads
        h5.attrs["source_paths"] = paths
    return {
        "n_frames": int(n_frames),
        "n_files": len(paths),
        "n_beads": int(n_beads),
        "frames_per_file": [int(c.shape[0]) for c in coords],
        "out_path": os.fspath(out_path),
    }


# --------------------------------------------------------------------------- autoencoder


def features(maps: NDArray[Any], offset: int = 1) -> FloatArray:
    """Flatten contact maps to their upper triangle.

    Args:
        maps: Contact maps, shape ``(N, n, n)``.
        offset: Diagonal offset of the triangle (1 drops the always-on diagonal).

    Returns:
        ``float64`` array of shape ``(N, n_features)``.
    """
    m = np.asarray(maps)
    iu = np.triu_indices(m.shape[-1], k=offset)
    out: FloatArray = m[:, iu[0], iu[1]].astype(np.float64)
    return out


_PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4")


def _init_params(
    n_in: int, hidden: int, latent: int, rng: np.random.Generator
) -> dict[str, FloatArray]:
    """Glorot-uniform weights and zero biases of the autoencoder."""
    shapes = [(n_in, hidden), (hidden, latent), (latent, hidden), (hidden, n_in)]
    params: dict[str, FloatArray] = {}
    for k, (fan_in, fan_out) in enumerate(shapes, start=1):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        params[f"W{k}"] = rng.uniform(-lim, lim, size=(fan_in, fan_out))
        params[f"b{k}"] = np.zeros(fan_out)
    return params


def _encode(p: dict[str, Any], x: Any, mod: ModuleType) -> tuple[Any, Any]:
    """Run the encoder; return (hidden activations, latent)."""
    h1 = mod.tanh(x @ p["W1"] + p["b1"])
    return h1, h1 @ p["W2"] + p["b2"]


def _loss_and_grads(p: dict[str, Any], x: Any, mod: ModuleType) -> tuple[float, dict[str, Any]]:
    """Mean binary cross-entropy of a batch and its gradients (explicit backward pass)."""
    h1, z = _encode(p, x, mod)
    h2 = mod.tanh(z @ p["W3"] + p["b3"])
    logits = h2 @ p["W4"] + p["b4"]
    # BCE with logits: softplus(l) - x * l, computed stably.
    sp = mod.maximum(logits, 0.0) + mod.log1p(mod.exp(-mod.abs(logits)))
    loss = float((sp - x * logits).mean())

    d_logits = (1.0 / (1.0 + mod.exp(-logits)) - x) / x.size
    g: dict[str, Any] = {"W4": h2.T @ d_logits, "b4": d_logits.sum(axis=0)}
    d_a3 = (d_logits @ p["W4"].T) * (1.0 - h2 * h2)
    g["W3"] = z.T @ d_a3
    g["b3"] = d_a3.sum(axis=0)
    d_z = d_a3 @ p["W3"].T
    g["W2"] = h1.T @ d_z
    g["b2"] = d_z.sum(axis=0)
    d_a1 = (d_z @ p["W2"].T) * (1.0 - h1 * h1)
    g["W1"] = x.T @ d_a1
    g["b1"] = d_a1.sum(axis=0)
    return loss, g


def train(
    h5_path: PathLike,
    out_path: PathLike,
    *,
    latent_dim: int = 4,
    hidden_dim: int = 64,
    epochs: int = 60,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    use_gpu: bool = False,
) -> dict[str, Any]:
    """Train a fully connected autoencoder on aggregated contact maps.

    Architecture: upper-triangle contact map (``n (n - 1) / 2`` inputs) -> tanh
    hidden -> linear latent -> tanh hidden -> sigmoid reconstruction, trained on the
    mean binary cross-entropy with Adam on shuffled minibatches. Forward and
    backward passes are explicit array code. Initial weights and shuffling come from
    ``numpy.random.default_rng(seed)``, so a seed gives the same weights and losses
    on the same machine and backend.

    Args:
        h5_path: HDF5 file written by ``aggregate``.
        out_path: Output ``.npz`` with the weights ``W1..W4``, ``b1..b4`` and
            ``n_beads``, ``triu_offset``, ``latent_dim``, ``hidden_dim``, ``loss``.
        latent_dim: Latent dimension.
        hidden_dim: Width of both hidden layers.
        epochs: Passes over the data.
        lr: Adam learning rate.
        batch_size: Minibatch size.
        seed: Seed of the initial weights and of the shuffling.
        use_gpu: Compute with CuPy on the GPU (see ``xp``).

    Returns:
        ``loss`` (mean training loss of each epoch), ``n_samples``, ``n_features``,
        ``latent_dim``, ``epochs``, ``backend``, ``wall_time_s`` and ``out_path``.

    Raises:
        RuntimeError: If ``use_gpu`` is true and CuPy is not available.
        ValueError: If the file holds no frames or the sizes are invalid.
    """
    mod = xp(use_gpu)
    t0 = time.perf_counter()
    if latent_dim < 1 or hidden_dim < 1 or epochs < 1 or batch_size < 1:
        raise ValueError("latent_dim, hidden_dim, epochs and batch_size must be >= 1")
    with h5py.File(h5_path, "r") as h5:
        maps = h5["contact_maps"][()]
    if maps.shape[0] == 0:
        raise ValueError(f"{os.fspath(h5_path)} holds no frames")
    offset = 1
    x_host = features(maps, offset)
    n, d = x_host.shape

    rng = np.random.default_rng(seed)
    host_params = _init_params(d, hidden_dim, latent_dim, rng)
    params = {k: mod.asarray(v) for k, v in host_params.items()}
    m1 = {k: mod.zeros_like(v) for k, v in params.items()}
    m2 = {k: mod.zeros_like(v) for k, v in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x_all = mod.asarray(x_host)

    losses: list[float] = []
    t = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            xb = x_all[mod.asarray(idx)]
            loss, grads = _loss_and_grads(params, xb, mod)
            total += loss * len(idx)
            t += 1
            c1 = 1.0 - beta1**t
            c2 = 1.0 - beta2**t
            for k in _PARAM_NAMES:
                m1[k] = beta1 * m1[k] + (1.0 - beta1) * grads[k]
                m2[k] = beta2 * m2[k] + (1.0 - beta2) * grads[k] * grads[k]
                params[k] = params[k] - lr * (m1[k] / c1) / (mod.sqrt(m2[k] / c2) + eps)
        losses.append(total / n)

    np.savez(
        out_path,
        **{k: _to_numpy(v) for k, v in params.items()},
        n_beads=maps.shape[1],
        triu_offset=offset,
        latent_dim=latent_dim,
        hidden_dim=hidden_dim,
        loss=np.array(losses),
    )
    return {
        "loss": losses,
        "n_samples": int(n),
        "n_features": int(d),
        "latent_dim": latent_dim,
        "epochs": epochs,
        "backend": mod.__name__,
        "wall_time_s": time.perf_counter() - t0,
        "out_path": os.fspath(out_path),
    }


# --------------------------------------------------------------------------- inference


def _knn(z: FloatArray, k: int, chunk: int = 1024) -> tuple[FloatArray, NDArray[np.intp]]:
    """Distances to and indices of the k nearest other points, sorted by distance."""
    n = z.shape[0]
    sq = np.einsum("ij,ij->i", z, z)
    dist = np.empty((n, k))
    ind = np.empty((n, k), dtype=np.intp)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        d2 = sq[lo:hi, None] + sq[None, :] - 2.0 * (z[lo:hi] @ z.T)
        np.maximum(d2, 0.0, out=d2)
        d2[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # exclude self
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        ind[lo:hi] = np.take_along_axis(part, order, axis=1)
        dist[lo:hi] = np.sqrt(np.take_along_axis(pd, order, axis=1))
    return dist, ind


def _outlier_scores(z: FloatArray, method: str, k: int) -> FloatArray:
    """Outlier score per point; larger means more unusual."""
    dist, ind = _knn(z, k)
    scores: FloatArray
    if method == "knn":
        scores = dist.mean(axis=1)
    elif method == "lof":
        k_dist = dist[:, -1]
        reach = np.maximum(dist, k_dist[ind])
        lrd = 1.0 / (reach.mean(axis=1) + 1e-12)
        scores = lrd[ind].mean(axis=1) / lrd
    else:
        raise ValueError(f"unknown method {method!r}; use 'knn' or 'lof'")
    return scores


def embed(h5_path: PathLike, model_path: PathLike, *, use_gpu: bool = False) -> FloatArray:
    """Latent coordinates of every frame of an aggregated HDF5 file.

    Args:
        h5_path: HDF5 file written by ``aggregate``.
        model_path: ``.npz`` written by ``train``.
        use_gpu: Compute with CuPy on the GPU (see ``xp``).

    Returns:
        ``(N, latent_dim)`` float64 array.

    Raises:
        ValueError: If the model was trained on chains of another length.
    """
    mod = xp(use_gpu)
    with np.load(model_path) as data:
        params = {k: mod.asarray(data[k]) for k in ("W1", "b1", "W2", "b2")}
        n_beads = int(data["n_beads"])
        offset = int(data["triu_offset"])
    with h5py.File(h5_path, "r") as h5:
        maps = h5["contact_maps"][()]
    if maps.shape[1] != n_beads:
        raise ValueError(f"model expects {n_beads} beads, data has {maps.shape[1]}")
    _, z = _encode(params, mod.asarray(features(maps, offset)), mod)
    return np.asarray(_to_numpy(z), dtype=np.float64)


def infer(
    h5_path: PathLike,
    model_path: PathLike,
    out_path: PathLike,
    *,
    n_outliers: int = 8,
    method: str = "knn",
    n_neighbors: int = 10,
    use_gpu: bool = False,
) -> dict[str, Any]:
    """Pick restart states: the most unusual frames in the autoencoder's latent space.

    Every frame is embedded with the trained encoder, then scored with ``method``:
    ``"knn"`` is the mean Euclidean distance to the ``n_neighbors`` nearest other
    frames; ``"lof"`` is the local outlier factor over the same neighbourhoods. The
    ``n_outliers`` highest-scoring frames are chosen (ties broken by frame order).
    Neighbour search is vectorised and chunked, so memory is O(1024 * N).

    Args:
        h5_path: HDF5 file written by ``aggregate``.
        model_path: ``.npz`` written by ``train``.
        out_path: Output ``.npz`` holding ``coords`` (n_outliers, n_beads, 3) of the
            chosen frames, ``scores``, ``source`` (n_outliers, 2: input file index and
            frame index, as in the HDF5 ``source``), ``frame_index`` (rows of the
            HDF5 file), and ``all_scores``. ``coords`` can be passed to ``simulate`` as
            ``start`` with ``start_frame`` choosing the state.
        n_outliers: How many frames to choose (capped at the number of frames).
        method: ``"knn"`` or ``"lof"``.
        n_neighbors: Neighbourhood size (capped at N - 1).
        use_gpu: Run the encoder with CuPy on the GPU (see ``xp``).

    Returns:
        ``chosen`` (list of (source file index, frame index) pairs, most unusual
        first), ``scores``, ``frame_index``, ``method``, ``n_frames`` and ``out_path``.

    Raises:
        ValueError: With fewer than 2 frames, ``n_outliers < 1`` or an unknown method.
    """
    if n_outliers < 1 or n_neighbors < 1:
        raise ValueError("n_outliers and n_neighbors must be >= 1")
    z = embed(h5_path, model_path, use_gpu=use_gpu)
    n = z.shape[0]
    if n < 2:
        raise ValueError("need at least 2 frames to score outliers")
    scores = _outlier_scores(z, method, min(n_neighbors, n - 1))
    chosen = np.argsort(-scores, kind="stable")[: min(n_outliers, n)]
    rows = np.sort(chosen)  # h5py fancy indexing needs increasing indices
    with h5py.File(h5_path, "r") as h5:
        coords_sorted = h5["coords"][rows]
        source_sorted = h5["source"][rows]
    back = np.searchsorted(rows, chosen)
    coords = coords_sorted[back]
    source = source_sorted[back]
    np.savez(
        out_path,
        coords=coords,
        scores=scores[chosen],
        source=source,
        frame_index=chosen,
        all_scores=scores,
    )
    return {
        "chosen": [(int(s), int(f)) for s, f in source],
        "scores": [float(s) for s in scores[chosen]],
        "frame_index": [int(i) for i in chosen],
        "method": method,
        "n_frames": int(n),
        "out_path": os.fspath(out_path),
    }
