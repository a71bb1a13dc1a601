"""Shared fixtures: no network, a private matplotlib cache, shared data, in-memory stores."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# importing robocrys/matplotlib writes a font cache: keep it out of the user's home
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="anisoscreen-mpl-"))
# compiled kernels go to a temporary cache, never the user's
os.environ.setdefault("ANISOSCREEN_KERNEL_CACHE", tempfile.mkdtemp(prefix="anisoscreen-kernels-"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


def _tiny_config():
    from anisoscreen.model.nn.network import ModelConfig

    return ModelConfig(mul=4, lmax=2, radial_hidden=16, embed_dim=8)


TINY = _tiny_config()
SHARED = Path(os.environ.get("ANISOSCREEN_SHARED", REPO.parent / "shared")).resolve()
TEST_DATA = REPO / "tests" / "data"
"""Small real data the unit tests need (large data stays in ``$ANISOSCREEN_SHARED``)."""


@pytest.fixture(scope="session", autouse=True)
def _test_data_intact() -> None:
    """Every file listed in ``tests/data/SHA256SUMS`` is present with that checksum."""
    import hashlib

    for line in (TEST_DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        path = TEST_DATA / name
        assert path.is_file(), f"test data {path} is missing"
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        assert actual == digest, f"test data {path} changed (sha256 {actual})"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (``$ANISOSCREEN_SHARED``, default ``../shared``)."""
    if not (SHARED / "data").is_dir():
        pytest.fail(f"shared data not found at {SHARED}; set ANISOSCREEN_SHARED")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every test gets its own data dir and config file; MP key never leaks in."""
    monkeypatch.setenv("ANISOSCREEN_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "config.yaml"
    config.touch()  # an explicitly named config file must exist
    monkeypatch.setenv("ANISOSCREEN_CONFIG", str(config))
    monkeypatch.setenv("ANISOSCREEN_SHARED", str(SHARED))
    monkeypatch.delenv("ANISOSCREEN_STORE", raising=False)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    monkeypatch.delenv("ANISOSCREEN_MP_API_KEY", raising=False)


@pytest.fixture(params=["fused", "torch"])
def edge_backend(request, monkeypatch):
    """Run edge tensor products through the fused CPU kernel, or through the PyTorch path."""
    from anisoscreen.model.nn.edge_tp import cpu_fused as fused

    monkeypatch.setenv(fused.DISABLE_ENV, "1" if request.param == "fused" else "0")
    fused.load_kernel.cache_clear()
    if request.param == "fused":
        assert fused.load_kernel() is not None, "the fused kernel did not build"
    yield request.param
    fused.load_kernel.cache_clear()


@pytest.fixture
def memory_settings():
    """Settings whose stores are in-memory maggma MemoryStores."""
    from anisoscreen.settings import get_settings

    return get_settings(store="memory")


@pytest.fixture
def memory_results(memory_settings):
    """A ResultsStore on MemoryStores (closed after the test)."""
    from anisoscreen.store import ResultsStore

    with ResultsStore(memory_settings) as results:
        yield results


@pytest.fixture(scope="module")
def model_set(tmp_path_factory) -> tuple[Path, Path]:
    """A small untrained electronic + ionic model set: ``(electronic, ionic)`` model files."""
    from model_sets import write_model_set  # tests/ is on the path (pytest's rootdir conftest)

    return write_model_set(tmp_path_factory.mktemp("model-set"))


@pytest.fixture(scope="session")
def tiny_model(shared_dir, tmp_path_factory):
    """A model trained for 2 epochs on 100 cleaned entries (the CI smoke training).

    Returns ``(folder, result)``; ``folder`` holds model.pt, metrics.json and MODEL_CARD.md.
    """
    from anisoscreen.model.training.pipeline import train_model
    from anisoscreen.model.training.train import TrainConfig

    folder = tmp_path_factory.mktemp("models") / "tiny"
    result = train_model(
        shared_dir / "data" / "mp_dielectric_tensors.json.gz",
        folder,
        "tiny",
        TINY,
        TrainConfig(max_epochs=2, batch_size=16),
        max_entries=100,
        device="cpu",
    )
    return folder, result


@pytest.fixture
def triclinic():
    """A small triclinic Ga-N-O cell: no symmetry, so every tensor component is free."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.from_parameters(4.1, 5.2, 6.3, 81, 95, 103),
        ["Ga", "N", "O", "O"],
        [[0, 0, 0], [0.3, 0.2, 0.1], [0.6, 0.7, 0.45], [0.1, 0.55, 0.8]],
    )


@pytest.fixture(scope="session")
def tiny_ensemble(shared_dir, tmp_path_factory):
    """A three-member tiny ensemble, one epoch on 300 cleaned entries (campaign tests).

    Returns the folder holding its model.pt (its metadata names the data, split and seeds).
    """
    from anisoscreen.model.training.pipeline import train_model
    from anisoscreen.model.training.train import TrainConfig

    folder = tmp_path_factory.mktemp("models") / "tiny-ensemble"
    train_model(
        shared_dir / "data" / "mp_dielectric_tensors.json.gz",
        folder,
        "tiny-ensemble",
        TINY,
        TrainConfig(max_epochs=1, batch_size=16),
        seeds=(0, 1, 2),
        max_entries=300,
        device="cpu",
    )
    return folder


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A private SLURM cluster (``tests/fixtures/slurm_cluster.py``) for one test module.

    Skips with the reason where slurmctld/slurmd/munge are not installed or do not start; under
    ``CI=true`` (where ``.ci/run`` installs them) it fails instead, so that a green CI run never
    hides SLURM tests that did not run.
    """
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from slurm_cluster import SlurmCluster, missing_requirements

    give_up = pytest.fail if os.environ.get("CI", "").lower() == "true" else pytest.skip
    reason = missing_requirements()
    if reason:
        give_up(f"{reason} (CI=true: failing, not skipping)" if give_up is pytest.fail else reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        give_up(f"could not start a private SLURM cluster: {exc}")
    yield cluster
    cluster.stop()
