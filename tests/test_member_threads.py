"""Ensemble members on threads, and the predictor's overlap of graph building with the network."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.inference import PredictionFailure, Predictor
from anisoscreen.model.member_threads import MemberThreads
from anisoscreen.model.nn.network import AnisoNet
from anisoscreen.structures_io import StructureRecord

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402

CPU = torch.device("cpu")


def test_workers_run_one_intra_op_thread_each_on_cpu_and_the_plain_loop_elsewhere():
    assert MemberThreads(threads=2).workers(8, CPU) == (2, 1)
    assert MemberThreads(threads=16).workers(8, CPU) == (8, 2)
    assert MemberThreads(threads=4).workers(3, CPU) == (3, 1)
    assert MemberThreads(threads=1).workers(8, CPU) == (1, 1)
    assert MemberThreads(threads=4).workers(1, CPU) == (1, 4)
    assert MemberThreads(threads=4).workers(8, torch.device("cuda")) == (1, 4)


def test_map_keeps_member_order_runs_in_inference_mode_and_leaves_the_callers_threads():
    runner = MemberThreads(threads=2)
    before = torch.get_num_threads()
    seen: list[tuple[int, bool, int, str]] = []

    def member(i: int) -> int:
        seen.append(
            (
                i,
                torch.is_inference_mode_enabled(),
                torch.get_num_threads(),
                threading.current_thread().name,
            )
        )
        return i * i

    assert runner.map(member, list(range(7)), CPU) == [i * i for i in range(7)]
    assert all(inference and threads == 1 for _, inference, threads, _ in seen)
    assert all(name.startswith("anisoscreen-member") for *_, name in seen)
    assert torch.get_num_threads() == before
    runner.close()


def _structures() -> list[Structure]:
    rocksalt = crystals.nacl()
    layered = Structure(
        Lattice.hexagonal(3.2, 18.0),
        ["Mo", "S", "S"],
        [[0, 0, 0.5], [1 / 3, 2 / 3, 0.58], [1 / 3, 2 / 3, 0.42]],
    )
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )
    return [rocksalt, layered, rutile]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    config = crystals.laminate_config()
    states = []
    for seed in range(3):
        torch.manual_seed(seed)
        states.append(AnisoNet(config).state_dict())
    path = tmp_path_factory.mktemp("ensemble") / "tiny.pt"
    save_model(path, config, states, "tiny", "0")
    return load_model(path)


def _records(structures: list[Structure], thread_names: list[str]):
    """Records from a generator that notes the thread consuming it."""
    for i in range(12):
        thread_names.append(threading.current_thread().name)
        if i == 5:
            yield StructureRecord(f"broken-{i}", None, "test", error="unreadable")
        else:
            yield StructureRecord(f"s-{i}", structures[i % len(structures)], "test")


def test_threaded_prediction_equals_the_loop_in_input_order_and_reads_in_the_calling_thread(
    ensemble,
):
    structures = _structures()
    results = {}
    for name, runner in {
        "loop": MemberThreads(threads=1),
        "threads": MemberThreads(threads=2),
    }.items():
        predictor = Predictor(ensemble, device="cpu", batch_size=4)
        predictor._members = runner
        readers: list[str] = []
        progress: list[int] = []
        results[name] = list(
            predictor.predict_with_members(_records(structures, readers), progress.append)
        )
        # records are read where a file's parse time limit works: the calling thread
        assert set(readers) == {threading.current_thread().name}
        assert progress == [4, 4, 4]

    ids = [doc.material_id for doc, _ in results["threads"]]
    assert ids == [f"broken-{i}" if i == 5 else f"s-{i}" for i in range(12)]
    assert isinstance(results["threads"][5][0], PredictionFailure)
    for (doc_a, members_a), (doc_b, members_b) in zip(
        results["loop"], results["threads"], strict=True
    ):
        if members_a is None:
            assert members_b is None
            continue
        np.testing.assert_allclose(members_a.electronic, members_b.electronic, rtol=1e-6, atol=1e-6)
        assert doc_a.eps_poly == pytest.approx(doc_b.eps_poly, rel=1e-6)
        assert members_b.electronic.shape == (3, 3, 3)
