"""Unit tests of the DeepDriveMD science kernels (no MPI)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if TYPE_CHECKING:
    from apps.deepdrivemd import science
else:  # make ``apps`` importable however pytest is started
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    science = importlib.import_module("apps.deepdrivemd.science")

N_BEADS = 32


def _gpu_available() -> bool:
    """Whether CuPy and a GPU are usable here."""
    try:
        science.xp(True)
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four short seeded trajectories (41 frames each)."""
    d = tmp_path_factory.mktemp("sims")
    paths = []
    for seed in range(4):
        p = d / f"sim{seed}.npz"
        science.simulate(p, seed=seed, n_steps=400, save_every=10)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, sims: list[Path]) -> Path:
    """Aggregate of the trajectories plus two planted, very different states.

    The planted states are the last file (index len(sims)): frame 0 is a fully
    collapsed chain (every pair in contact), frame 1 a two-strand hairpin (contacts
    on the anti-diagonal). A fully extended chain is deliberately not planted: its
    contact map (bonds only) is close to the sparse maps of ordinary coil frames, so
    it is not reliably an outlier.
    """
    d = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(123)
    collapsed = rng.normal(scale=0.2, size=(N_BEADS, 3))
    half = N_BEADS // 2
    hairpin = np.zeros((N_BEADS, 3))
    hairpin[:half, 0] = np.arange(half)
    hairpin[half:, 0] = np.arange(half)[::-1]
    hairpin[half:, 1] = 1.0
    coords = np.stack([collapsed, hairpin])
    p = d / "planted.npz"
    np.savez(p, coords=coords, contact_maps=science.contact_map(coords))
    h5 = d / "agg.h5"
    science.aggregate([*sims, p], h5)
    return h5


def test_md_energy_conserved_and_bonds_near_rest_length(tmp_path: Path) -> None:
    for seed in range(3):
        out = tmp_path / f"md{seed}.npz"
        summary = science.simulate(out, seed=seed)  # default sizes
        assert summary["n_frames"] == 2000 // 50 + 1
        assert summary["energy_drift"] < science.ENERGY_DRIFT_TOLERANCE
        assert summary["max_energy_error"] < science.ENERGY_DRIFT_TOLERANCE
        with np.load(out) as data:
            coords = data["coords"]
            energies = data["energies"]
            maps = data["contact_maps"]
        assert coords.shape == (41, N_BEADS, 3)
        assert maps.shape == (41, N_BEADS, N_BEADS) and maps.dtype == np.uint8
        np.testing.assert_allclose(energies[:, 0], energies[:, 1] + energies[:, 2])
        e = energies[:, 0]
        assert np.max(np.abs(e - e[0])) / abs(e[0]) < science.ENERGY_DRIFT_TOLERANCE
        bonds = np.linalg.norm(np.diff(coords, axis=1), axis=2)
        assert abs(bonds.mean() - 1.0) < 0.02
        assert np.max(np.abs(bonds - 1.0)) < 0.3
        np.testing.assert_array_equal(maps, science.contact_map(coords))


def test_md_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    science.simulate(a, seed=7, n_steps=200)
    science.simulate(b, seed=7, n_steps=200)
    with np.load(a) as da, np.load(b) as db:
        np.testing.assert_array_equal(da["coords"], db["coords"])


def test_restart_starts_from_given_state(tmp_path: Path, sims: list[Path]) -> None:
    with np.load(sims[1]) as data:
        state = data["coords"][-1].copy()
    out = tmp_path / "restart.npz"
    science.simulate(out, start=state, seed=3, n_steps=100, save_every=10)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["initial_coords"], state)
        np.testing.assert_array_equal(data["coords"][0], state)
        assert not np.array_equal(data["coords"][-1], state)

    # the same state given as a path plus frame index
    out2 = tmp_path / "restart2.npz"
    science.simulate(out2, start=sims[1], start_frame=-1, seed=3, n_steps=100, save_every=10)
    with np.load(out) as d1, np.load(out2) as d2:
        np.testing.assert_array_equal(d1["coords"], d2["coords"])

    with pytest.raises(ValueError, match="beads"):
        science.simulate(tmp_path / "bad.npz", start=state, n_beads=N_BEADS + 1, n_steps=10)


def test_aggregate_keeps_every_frame(tmp_path: Path, sims: list[Path]) -> None:
    out = tmp_path / "agg.h5"
    summary = science.aggregate(sims, out)
    assert summary["n_frames"] == 4 * 41
    assert summary["frames_per_file"] == [41] * 4
    with h5py.File(out, "r") as h5:
        assert h5.attrs["n_frames"] == 4 * 41
        assert h5.attrs["n_files"] == 4
        assert h5["contact_maps"].dtype == np.uint8
        maps, coords, source = h5["contact_maps"][()], h5["coords"][()], h5["source"][()]
    assert maps.shape == (164, N_BEADS, N_BEADS)
    for row, (i, f) in enumerate(source):
        if row % 13 == 0 or row == len(source) - 1:
            with np.load(sims[i]) as data:
                np.testing.assert_array_equal(coords[row], data["coords"][f])
                np.testing.assert_array_equal(maps[row], data["contact_maps"][f])
    np.testing.assert_array_equal(source[:, 0], np.repeat(np.arange(4), 41))
    np.testing.assert_array_equal(source[:, 1], np.tile(np.arange(41), 4))


def test_training_loss_falls_and_is_deterministic(tmp_path: Path, planted: Path) -> None:
    r1 = science.train(planted, tmp_path / "m1.npz", seed=0, epochs=40)
    r2 = science.train(planted, tmp_path / "m2.npz", seed=0, epochs=40)
    loss = r1["loss"]
    assert len(loss) == 40
    assert loss[-1] < 0.7 * loss[0]
    assert r1["loss"] == r2["loss"]
    with np.load(tmp_path / "m1.npz") as a, np.load(tmp_path / "m2.npz") as b:
        for k in ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"):
            np.testing.assert_array_equal(a[k], b[k])
    r3 = science.train(planted, tmp_path / "m3.npz", seed=1, epochs=40)
    assert r3["loss"] != r1["loss"]


@pytest.mark.parametrize("method", ["knn", "lof"])
def test_infer_finds_planted_outliers(tmp_path: Path, planted: Path, method: str) -> None:
    model = tmp_path / "model.npz"
    science.train(planted, model, seed=0)
    out = tmp_path / "outliers.npz"
    result = science.infer(planted, model, out, n_outliers=5, method=method)
    planted_file = 4
    assert (planted_file, 0) in result["chosen"]
    assert (planted_file, 1) in result["chosen"]
    assert result["scores"] == sorted(result["scores"], reverse=True)
    with np.load(out) as data, h5py.File(planted, "r") as h5:
        assert data["coords"].shape == (5, N_BEADS, 3)
        np.testing.assert_array_equal(data["source"], np.array(result["chosen"]))
        np.testing.assert_array_equal(data["coords"], h5["coords"][()][data["frame_index"]])


def test_restart_from_infer_output(tmp_path: Path, sims: list[Path]) -> None:
    h5 = tmp_path / "agg.h5"
    science.aggregate(sims, h5)
    model = tmp_path / "model.npz"
    science.train(h5, model, epochs=5)
    picks = tmp_path / "picks.npz"
    science.infer(h5, model, picks, n_outliers=3)
    with np.load(picks) as data:
        chosen = data["coords"][2].copy()
    out = tmp_path / "md.npz"
    science.simulate(out, start=picks, start_frame=2, n_steps=50, save_every=10)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["coords"][0], chosen)


def test_module_does_not_import_cupy() -> None:
    code = "import sys, apps.deepdrivemd.science; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_use_gpu_without_cupy_raises(tmp_path: Path, planted: Path) -> None:
    assert science.xp(False) is np
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is importable here")
    with pytest.raises(RuntimeError, match="CuPy is not available"):
        science.xp(True)
    with pytest.raises(RuntimeError, match="CuPy is not available"):
        science.train(planted, tmp_path / "m.npz", use_gpu=True)


@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a GPU")
def test_train_on_gpu_matches_cpu(tmp_path: Path, planted: Path) -> None:
    cpu = science.train(planted, tmp_path / "cpu.npz", epochs=3)
    gpu = science.train(planted, tmp_path / "gpu.npz", epochs=3, use_gpu=True)
    assert gpu["backend"] == "cupy"
    np.testing.assert_allclose(gpu["loss"], cpu["loss"], rtol=1e-6)
    z_cpu = science.embed(planted, tmp_path / "cpu.npz")
    z_gpu = science.embed(planted, tmp_path / "cpu.npz", use_gpu=True)
    np.testing.assert_allclose(z_gpu, z_cpu, rtol=1e-8, atol=1e-10)


def test_autoencoder_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    params = science._init_params(10, 6, 2, rng)
    for k in ("b1", "b2", "b3", "b4"):
        params[k] = rng.normal(scale=0.1, size=params[k].shape)
    x = (rng.random((5, 10)) < 0.3).astype(np.float64)
    _, grads = science._loss_and_grads(params, x, np)
    h = 1e-6
    for k, g in grads.items():
        for idx in [(0,) * params[k].ndim, tuple(s - 1 for s in params[k].shape)]:
            old = params[k][idx]
            params[k][idx] = old + h
            up, _ = science._loss_and_grads(params, x, np)
            params[k][idx] = old - h
            down, _ = science._loss_and_grads(params, x, np)
            params[k][idx] = old
            assert abs((up - down) / (2 * h) - g[idx]) < 1e-7, (k, idx)
