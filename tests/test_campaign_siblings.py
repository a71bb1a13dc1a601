"""Labels carried by the laminate law to the other paddings of the same layer stack."""

from __future__ import annotations

import numpy as np
import pytest
from campaign_helpers import ORACLE
from crystals import mos2
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen.bonding import crystalnn_bonds
from anisoscreen.campaign.learner import with_carried_labels
from anisoscreen.campaign.residual import Posterior
from anisoscreen.campaign.siblings import carried_values, carry, sibling_table
from anisoscreen.exfoliation import exfoliate, laminate_tensor, layer_stack

BULK_EPS = np.diag([15.4, 15.4, 6.2])
DELTAS = (2.0, 5.0, 12.0)


def anisotropy(tensors: np.ndarray) -> np.ndarray:
    eigenvalues = np.linalg.eigvalsh(tensors)
    return eigenvalues[..., -1] / eigenvalues[..., 0]


@pytest.fixture(scope="module")
def pool():
    """2H-MoS2, three paddings of it, one turned and moved, and two strangers."""
    bulk = mos2()
    stack = layer_stack(bulk, crystalnn_bonds(bulk))
    assert stack is not None
    copies = [exfoliate(bulk, stack, delta) for delta in DELTAS]
    rotation = Rotation.from_rotvec([0.3, -0.5, 0.8]).as_matrix()
    turned = Structure(  # a padding turned in space and moved along a lattice vector
        Lattice(copies[1].lattice.matrix @ rotation.T), copies[1].species, copies[1].frac_coords
    )
    turned.translate_sites(list(range(len(turned))), [0.1, 0.2, 0.3])
    wider = copies[2].lattice.matrix * np.array([[1.05], [1.05], [1.0]])
    stretched = Structure(Lattice(wider), copies[2].species, copies[2].frac_coords)  # 5 % wider
    framework = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = [bulk, *copies, turned, stretched, framework]
    labels = [BULK_EPS, *(laminate_tensor(BULK_EPS, stack, d)[0] for d in DELTAS)]
    return structures, sibling_table(structures), labels


def test_paddings_of_one_stack_are_siblings_and_others_are_not(pool):
    _, table, _ = pool
    groups = table[:, 0]
    assert groups[0] >= 0
    assert (groups[:5] == groups[0]).all()  # bulk, paddings, a moved padding
    assert groups[5] == -1  # a different in-plane lattice: another material
    assert groups[6] == -1 and np.isnan(table[6, 1])  # not a stack
    np.testing.assert_allclose(table[:4, 1], 12.3 + 2 * np.array([0.0, *DELTAS]))
    np.testing.assert_allclose(np.abs(table[:4, 4]), 1.0)  # layers normal to c


def test_a_carried_label_is_the_laminate_label_of_the_sibling(pool):
    _, table, labels = pool
    # from the widest padding back to the bulk and to the others, and from the bulk out
    for source in range(4):
        for target in range(4):
            normal, period = table[source, 2:], table[source, 1]
            carried = carry(labels[source], normal, period, table[target, 1])
            np.testing.assert_allclose(carried, labels[target], rtol=1e-9, atol=1e-9)


def test_carried_values_take_the_closest_labelled_period(pool):
    _, table, labels = pool
    # the bulk and the widest padding labelled; a made-up widest label tells the sources apart
    wrong_widest = labels[3] * 1.5
    indices, values = carried_values(table, [0, 3], [labels[0], wrong_widest], anisotropy)
    assert indices.tolist() == [1, 2, 4]  # the unlabelled siblings only
    closest = [min((0, 3), key=lambda s: abs(np.log(table[s, 1] / table[j, 1]))) for j in (1, 2, 4)]
    sources = {0: labels[0], 3: wrong_widest}
    expected = [
        anisotropy(carry(sources[s], table[s, 2:], table[s, 1], table[j, 1]))
        for s, j in zip(closest, (1, 2, 4), strict=True)
    ]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    nothing, none = carried_values(table, [6], [np.eye(3) * 3], anisotropy)
    assert len(nothing) == len(none) == 0


def test_carried_labels_combine_with_the_posterior_by_precision():
    posterior = Posterior(np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.5, 0.01]))
    combined = with_carried_labels(posterior, np.array([0, 2]), np.array([1.0, 3.0]), sigma=0.05)
    assert combined.mean[1] == 1.0 and combined.sigma[1] == 0.5  # not carried: unchanged
    assert combined.mean[0] == pytest.approx((0.0 / 0.25 + 1.0 / 0.0025) / (4 + 400))
    assert combined.sigma[0] == pytest.approx((4 + 400) ** -0.5)
    assert abs(combined.mean[2] - 2.0) < abs(combined.mean[2] - 3.0)  # a confident posterior
    assert posterior.mean[0] == 0.0  # the input is not modified


def oracle_family(deltas=(3.0, 6.0, 10.0)):
    """mp-27702 (InClO, a stack of one layer per period) of the test oracle with three
    paddings of it labelled by the laminate law, and six other oracle entries: every element
    is known to the tiny test models."""
    from anisoscreen.campaign.simulate import OracleEntry, load_oracle

    oracle = {e.material_id: e for e in load_oracle(ORACLE)}
    bulk = oracle["mp-27702"]
    stack = layer_stack(bulk.structure, crystalnn_bonds(bulk.structure))
    assert stack is not None
    family = [bulk] + [
        OracleEntry(
            f"mp-27702-pad{delta:g}",
            exfoliate(bulk.structure, stack, delta),
            laminate_tensor(bulk.dielectric_tensor, stack, delta)[0],
        )
        for delta in deltas
    ]
    others = [e for key, e in oracle.items() if key != "mp-27702"][:6]
    return family, others


@pytest.mark.slow
def test_a_simulated_campaign_carries_its_labels_to_the_siblings(tiny_ensemble):
    from anisoscreen.campaign.simulate import SimulationConfig, simulate
    from anisoscreen.settings import get_settings

    family, others = oracle_family()
    names = {e.material_id for e in family}
    config = SimulationConfig(
        strategy="greedy",
        rounds=2,
        batch_size=2,
        max_per_group=0,
        model=str(tiny_ensemble),
        learner="gp",
        carry_siblings=True,
    )
    pool = [*family, *others]
    subsets = {"all": {e.material_id for e in pool}, "stack": names}
    report = simulate(pool, config, get_settings().shared, evaluate_final=True, mae_subsets=subsets)
    first, second = report["rounds"]
    # the MAE of a subset that is the whole pool is the pool's; the stack's is lower once
    # its labels are carried
    assert first["mae_unlabelled_subsets"]["all"] == pytest.approx(first["mae_unlabelled"])
    final = report["final_mae_unlabelled_subsets"]
    assert final["all"] == pytest.approx(report["final_mae_unlabelled"])
    assert final["stack"] < first["mae_unlabelled_subsets"]["stack"]
    labelled = names & set(first["picked"])
    assert labelled  # the tiny ensemble ranks the stack's bulk among its first two
    assert first["carried"] == []
    assert sorted(second["carried"]) == sorted(names - labelled)
    assert not set(second["carried"]) & set(second["picked"])  # no DFT spent on them
    with pytest.raises(Exception, match="gp learner"):
        simulate(family, SimulationConfig(carry_siblings=True), get_settings().shared)


@pytest.mark.slow
def test_a_campaign_spends_no_dft_on_the_siblings_of_a_label(tmp_path, monkeypatch, tiny_ensemble):
    from campaign_helpers import oracle_pool

    from anisoscreen.campaign.rounds import load_campaign, start_campaign, step_campaign
    from anisoscreen.schemas import CampaignDoc, CandidateDoc
    from anisoscreen.store import ResultsStore

    settings, _, runner = oracle_pool(tmp_path, monkeypatch)
    family, others = oracle_family()
    names = {e.material_id for e in family}
    with ResultsStore(settings) as results:  # a pool of its own: the stack and six others
        results.upsert(
            [
                CandidateDoc.from_structure(e.structure, "pool", e.material_id)
                for e in [*family, *others]
            ]
        )
    runner.tensors.update({e.material_id: e.dielectric_tensor for e in family})
    doc = CampaignDoc(
        name="siblings",
        source="pool",
        strategy="greedy",
        batch_size=2,
        budget=4,
        max_per_group=0,
        base_model=str(tiny_ensemble),
        current_model=str(tiny_ensemble),
        local=True,
        learner="gp",
        carry_siblings=True,
    )
    start_campaign(doc, settings)
    for _ in range(2):
        assert "done" in step_campaign("siblings", settings)
    doc = load_campaign("siblings", settings)
    first, second = doc.rounds
    labelled = names & {p.material_id for p in first.picks}
    assert labelled  # the tiny ensemble ranks the stack's bulk among its first two
    for pick in first.picks:
        np.testing.assert_allclose(pick.observed_tensor, runner.tensors[pick.material_id])
    assert sorted(second.carried) == sorted(names - labelled)
    assert not set(second.carried) & {p.material_id for p in second.picks}
    assert sorted(runner.calls) == sorted(p.material_id for r in doc.rounds for p in r.picks)
    with pytest.raises(Exception, match="gp learner"):
        start_campaign(doc.model_copy(update={"name": "other", "learner": "finetune"}), settings)


def test_the_cli_refuses_carried_labels_without_the_gp_learner(tmp_path):
    from cli_helpers import run_cli

    from anisoscreen.errors import ExitCode

    out = run_cli(
        "campaign", "start", "c1", "--carry-siblings", "--data-dir", str(tmp_path), "--local"
    )
    assert out.returncode == ExitCode.USAGE, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs the gp learner" in lines[0]
