"""``evaluate --experimental``: the committed table of measured indices and the comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from anisoscreen import tensor as tmath
from anisoscreen.cli import app
from anisoscreen.model.experimental import experimental_table, optics_of, summarize_errors

LAYERED = {"MoS2", "WS2", "MoSe2", "WSe2", "BN", "GaS", "MoTe2"}


def test_table_rows_are_sourced_and_mapped_to_structures():
    table = experimental_table()
    rows = table["rows"]
    assert len(rows) >= 43
    assert {r["crystal"] for r in rows if r["layered"]} >= LAYERED
    for row in rows:
        assert row["material_id"].startswith("mp-")
        assert row["source"]["pages"] and row["source"]["database"].startswith("refractiveindex")
        assert 1.0 <= row["wavelength_um"] <= 3.2 and row["wavelength_note"]
        assert row["wavelength_um"] == round(row["wavelength_um"], 4)
        assert set(row["n"]) in ({"o", "e"}, {"alpha", "beta", "gamma"})
        assert all(1.3 < n < 5 for n in row["n"].values())
    # every crystal left out says why (GaSe: no P-6m2 GaSe in the shared sets)
    assert all(item["why"] for item in table["unmatched"])
    calcite = next(r for r in rows if r["crystal"] == "CaCO3")
    assert calcite["n"]["o"] > calcite["n"]["e"]  # optically negative


def test_optics_of_a_primitive_rhombohedral_cell_uses_the_threefold_axis():
    conventional = Structure.from_spacegroup(
        "R-3c", Lattice.hexagonal(4.99, 17.06), ["Ca", "C", "O"],
        [[0, 0, 0], [0, 0, 0.25], [0.257, 0, 0.25]],
    )  # fmt: skip
    primitive = conventional.get_primitive_structure()
    eps = np.diag([1.6584**2, 1.6584**2, 1.4864**2])  # c along z in both cells
    result = optics_of(eps, primitive, "uniaxial")
    assert result["n"] == pytest.approx({"o": 1.6584, "e": 1.4864})
    assert result["dn"] == pytest.approx(-0.172) and result["sign"] == "-"
    assert result["ar"] == pytest.approx((1.6584 / 1.4864) ** 2)


def test_summary_numbers_by_hand():
    def source(n_o, n_e):
        dn = n_e - n_o
        return {"n": {"o": n_o, "e": n_e}, "dn": dn, "sign": "+" if dn > 0 else "-",
                "ar": (max(n_o, n_e) / min(n_o, n_e)) ** 2}  # fmt: skip

    rows = [
        {"experiment": source(2.0, 2.2), "model": source(2.1, 2.2), "dft": source(2.3, 2.4)},
        {"experiment": source(1.6, 1.5), "model": source(1.5, 1.6), "dft": None},
    ]
    summary = summarize_errors(rows)
    model, dft = summary["model"], summary["dft"]
    assert model["mae_n_per_axis"] == pytest.approx({"o": (0.1 + 0.1) / 2, "e": (0.0 + 0.1) / 2})
    assert model["mae_dn"] == pytest.approx((0.1 + 0.2) / 2)  # signed: 0.1 vs 0.2, +0.1 vs -0.1
    assert (model["sign_right"], model["sign_total"]) == (1, 2)
    assert dft["n"] == 1 and dft["mae_n"] == pytest.approx(0.25)
    assert dft["mae_ar"] == pytest.approx(abs((2.4 / 2.3) ** 2 - 1.21))


@pytest.mark.slow
def test_evaluate_experimental_prints_the_side_by_side_table(tmp_path):
    out = tmp_path / "exp.json"
    figure = tmp_path / "parity.png"
    result = CliRunner().invoke(
        app, ["evaluate", "--experimental", "--model", "anisonet-mp-v2", "--device", "cpu",
              "--json", str(out), "--parity-plot", str(figure)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MP DFPT against experiment (43 crystals" in result.output
    data = json.loads(out.read_text())
    assert len(data["rows"]) >= 43 and figure.stat().st_size > 10_000
    layered = data["summary"]["layered"]
    assert layered["model"]["n"] == layered["dft"]["n"] >= 7
    mos2 = next(r for r in data["rows"] if r["crystal"] == "MoS2")
    assert mos2["dft"] is not None
    tensor_free = tmath.uniaxial_indices(np.diag([16.4, 16.4, 3.3]), [0, 0, 1])
    assert tensor_free[0] > tensor_free[1]  # the layered sign: n_o > n_e
    assert mos2["experiment"]["sign"] == "-" and mos2["model"]["sign"] == "-"
