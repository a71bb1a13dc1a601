"""A small, fixed store for the query, table and figure tests (imported by those tests)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from anisoscreen.schemas import PredictionDoc, ValidationDoc, ValidationState

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
MODEL = "anisonet-test"


def _prediction(mid, formula, tensor, dim, elements, e_hull, gap, system="orthorhombic", **extra):
    return PredictionDoc.from_tensor(
        tensor,
        material_id=mid,
        formula_pretty=formula,
        model=extra.pop("model", MODEL),
        model_version="1.0",
        model_checksum="0" * 64,
        dimensionality=dim,
        elements=elements,
        energy_above_hull=e_hull,
        band_gap=gap,
        crystal_system=system,
        created_at=extra.pop("created_at", T0),
        last_updated=T0,
        **extra,
    )


def optics_payload(diagonal_scale=(1.0, 4.0, 6.0), n=41):
    """A Lorentz-oscillator dielectric function in the documented ``optics`` layout."""
    energies = np.linspace(0.0, 10.0, n)
    rows_imag, rows_real = [], []
    for e in energies:
        imag, real = [], []
        for s in diagonal_scale:
            eps = 1.0 + s * 9.0 / (9.0 - e**2 - 1j * 0.8 * e)
            imag.append(float(eps.imag))
            real.append(float(eps.real))
        rows_imag.append(imag + [0.0, 0.0, 0.0])
        rows_real.append(real + [0.0, 0.0, 0.0])
    return {"energies": energies.tolist(), "eps_imag": rows_imag, "eps_real": rows_real}


def _validation(mid, formula, tensor, state=ValidationState.COMPLETED, optics=None, uuid=None):
    from anisoscreen import tensor as tmath

    summary = tmath.summarize(tensor) if tensor is not None else None
    return ValidationDoc(
        material_id=mid,
        formula_pretty=formula,
        job_uuid=uuid or f"job-{mid}",
        calc_type="dfpt",
        state=state,
        epsilon_electronic=tensor,
        eigenvalues=None if summary is None else summary.eigenvalues.tolist(),
        eps_poly=None if summary is None else summary.eps_poly,
        anisotropy_ratio=None if summary is None else summary.anisotropy_ratio,
        optics=optics,
        last_updated=T0,
    )


def small_docs():
    """Seven predictions (four validated, one flagged, two prediction-only) and validations."""
    predictions = [
        _prediction(
            "mp-1104369",
            "NaV2O4",
            [[3.0, 0, 0], [0, 17.0, 0], [0, 0, 19.5]],
            2,
            ["Na", "O", "V"],
            0.0,
            0.1,
        ),
        _prediction(
            "mp-2815",
            "MoS2",
            [[6.1, 0, 0], [0, 16.0, 0], [0, 0, 16.0]],
            2,
            ["Mo", "S"],
            0.0,
            1.23,
            "hexagonal",
        ),
        _prediction(
            "mp-1001",
            "K4Ni3NO6",
            [[2.5, 0, 0], [0, 4.0, 0.2], [0, 0.2, 7.9]],
            1,
            ["K", "N", "Ni", "O"],
            0.012,
            0.7,
            "monoclinic",
        ),
        _prediction(
            "mp-1002",
            "Ba2Cu2O5",
            [[4.0, 0, 0], [0, 5.5, 0], [0, 0, 7.6]],
            3,
            ["Ba", "Cu", "O"],
            0.03,
            0.9,
        ),
        _prediction(
            "mp-1003",
            "WSe2",
            [[7.0, 0, 0], [0, 18.9, 0], [0, 0, 18.9]],
            2,
            ["Se", "W"],
            0.0,
            1.4,
            "hexagonal",
        ),
        _prediction(
            "mp-1004",
            "Cs3Sb2I9",
            [[3.5, 0, 0], [0, 3.5, 0], [0, 0, 4.4]],
            0,
            ["Cs", "I", "Sb"],
            0.0,
            2.1,
            "hexagonal",
        ),
        _prediction(
            "mp-149",
            "Si",
            [[11.9, 0, 0], [0, 11.9, 0], [0, 0, 11.9]],
            None,
            ["Si"],
            0.0,
            0.6,
            "cubic",
        ),
    ]
    # an older prediction of another model: the newest (above) must win without --model
    predictions.append(
        _prediction(
            "mp-2815",
            "MoS2",
            [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]],
            2,
            ["Mo", "S"],
            0.0,
            1.23,
            model="old-model",
            created_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
        )
    )
    validations = [
        _validation(
            "mp-1104369",
            "NaV2O4",
            [[2.7, 0, -0.3], [0, 18.4, 0], [-0.3, 0, 20.8]],
            optics=optics_payload((1.0, 5.0, 6.0)),
        ),
        _validation("mp-2815", "MoS2", [[6.4, 0, 0], [0, 15.6, 0], [0, 0, 15.6]]),
        _validation(
            "mp-1001",
            "K4Ni3NO6",
            [[2.6, 0, 0], [0, 4.3, 0.1], [0, 0.1, 7.2]],
            optics=optics_payload((1.0, 2.0, 3.0)),
        ),
        _validation("mp-1002", "Ba2Cu2O5", [[4.1, 0, 0], [0, 5.8, 0], [0, 0, 8.1]]),
        # a flagged validation does not count
        _validation(
            "mp-1003",
            "WSe2",
            [[1.0, 0, 0], [0, 30.0, 0], [0, 0, 30.0]],
            state=ValidationState.FLAGGED,
        ),
        # a submitted validation without a result
        _validation("mp-1004", "Cs3Sb2I9", None, state=ValidationState.SUBMITTED),
    ]
    return predictions, validations


def fill(results):
    """Write the small data set into a ResultsStore; returns it."""
    predictions, validations = small_docs()
    results.upsert(predictions)
    results.upsert(validations)
    return results
