"""The ionic refine stage: eps0, the static tensor and the FOM of a screen's top-k, from physics.

Screening thousands of structures stays on the cheap direct ionic model. This stage takes
the ranking's first ``top_k`` rows and recomputes their eps0 by the harmonic formula
(:mod:`anisoscreen.ionic_physics`): Gamma force constants from a potential (SevenNet-0 by
default, SevenNet-l3i5 with predicted charges) and Born charges from a named source. Each
refined candidate keeps its optical Gamma modes with their mode effective charges and
oscillator strengths, so a user sees which phonons make it high-kappa.

``ionic_method`` says which value a row reports: ``physics`` when the route ran without a
flag (no polar imaginary or soft optical mode, small residual forces) with Born charges
from one of ``physics_sources``, ``blend`` when that value is mixed with the direct one
(``physics_weight`` < 1, a ``direct_weight``, or a ``spread_ratio``: each row's share by the
two ensembles' spreads, stored as ``physics_share``), ``direct`` otherwise (the direct model's
value is kept; the physics value, the modes and the flags are still stored). By default only
DFPT charges qualify: on the test split the route beats the direct model with DFPT charges,
loses to it with nominal ones, and with the charges of ``anisonet-mp-born`` and SevenNet-l3i5
force constants, blended, beats it by 24 % (:meth:`IonicRefineMaker.for_charges`,
``docs/ionic-physics.md``). That Born model's weights are rebuilt from its recipe (they are
not in the wheel), so for new candidates the direct model stays the default and the stage
adds the Gamma-mode analysis; ``predicted`` charges are one option away.

:class:`IonicRefineMaker` makes one job per shard of ``shard_size`` rows (static slices of
the ranking, so shards run in parallel and a failed shard reruns alone on jobflow-remote)
and a job merging their outputs. Each shard also writes its rows to the results store
(:class:`~anisoscreen.schemas.RefinementDoc`), where ``query``, ``table``, the browser and
the report join them to the predictions they refine (:func:`anisoscreen.query.join_refinement`).
The force constants, the stage's cost, are stored there too as each is computed
(:mod:`anisoscreen.ionic_physics.force_constant_cache`): a shard killed part-way, rerun,
computes only what it had not reached, and a second refine of the same structures none.
:func:`refine_structures` is the stage's per-structure work, which ``anisoscreen evaluate
--refine-charges`` runs on a data split (:mod:`anisoscreen.screening.refined_evaluation`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from jobflow import Flow, Maker, job
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import (
    CandidateDoc,
    GammaModeDoc,
    IonicRefinement,
    PredictionDoc,
    RefinementDoc,
)
from anisoscreen.screening.outputs import RankingStageOutput
from anisoscreen.screening.shards import shard_bounds
from anisoscreen.settings import DEFAULT_BORN_MODEL
from anisoscreen.store import ResultsStore

__all__ = [
    "PHYSICS_SOURCES",
    "PREDICTED_BLENDS",
    "PREDICTED_POTENTIAL",
    "GammaModeDoc",
    "IonicRefineMaker",
    "IonicRefineOutput",
    "IonicRefinement",
    "PredictedBlend",
    "RefineInput",
    "RefineMethod",
    "merge_refinements",
    "refine_ionic",
    "refine_structures",
]


PHYSICS_SOURCES: tuple[str, ...] = ("dfpt",)
"""Born sources whose physics eps0 beat the direct model on the test split."""
PREDICTED_POTENTIAL = "sevennet-l3i5"
"""The potential of the refine stage with predicted charges: the better one on validation."""


@dataclass(frozen=True)
class PredictedBlend:
    """How the refine stage blends the physics eps0 of predicted charges with the direct one.

    The :class:`RefineMethod` fields of the same names: with ``spread_ratio`` each row's
    physics share comes from the two ensembles' spreads and ``physics_weight`` scales the
    physics value; without it, ``direct_weight direct + physics_weight physics``.
    """

    physics_weight: float
    direct_weight: float | None = None
    spread_ratio: float | None = None


PREDICTED_BLENDS: dict[str, PredictedBlend] = {
    "sevennet-l3i5": PredictedBlend(physics_weight=0.95, spread_ratio=0.0501),
    "sevennet-0": PredictedBlend(physics_weight=0.7, direct_weight=0.15),
    "sevennet-mf-0": PredictedBlend(physics_weight=0.65, direct_weight=0.2),
}
"""The blend of the eps0 with predicted charges (``anisonet-mp-born`` 1.4.0), per potential,
fitted on every validation cell under 40 sites through this stage's code. SevenNet-l3i5's is
weighted per row by the spreads (``studies/blend_spread.py``; test ionic MAE_ten 1.706, the
constant blend 0.85 / 0.1 1.750); SevenNet-0's and SevenNet-MF-0's are constant
(``studies/blend_fit.py --potential P``; 1.924 and 1.982). The direct model gives 2.242."""


class IonicRefineOutput(BaseModel):
    """The refine stage's rows, in ranking order."""

    model: str = Field(description="Model whose ranking was refined.")
    potential: str
    born_source: str
    refinements: list[IonicRefinement]
    n_physics: int = Field(description="Rows whose totals use the physics eps0 (or blend).")
    n_flagged: int = Field(description="Rows with a soft/imaginary mode or large forces.")
    seconds: float = Field(description="Wall time (sum over shards after merging).")


class RefineMethod(BaseModel):
    """How the refine stage computes a row's eps0 (:class:`IonicRefineMaker`'s fields say it).

    One object for the maker, its jobs and :func:`refine_structures`, so a job or ``anisoscreen
    evaluate --refine-charges`` cannot drift from the maker's settings.
    """

    model_config = ConfigDict(frozen=True)

    potential: str = "sevennet-0"
    born_source: str = "nominal"
    min_frequency_thz: float = 1.0
    physics_sources: tuple[str, ...] = PHYSICS_SOURCES
    born_model: str = DEFAULT_BORN_MODEL
    physics_weight: float = 1.0
    direct_weight: float | None = None
    spread_ratio: float | None = None


def _charges_source(born_source: str, born_model: str) -> Callable[[Structure, str], np.ndarray]:
    """``(structure, material_id) -> Born charges (M, N, 3, 3)`` of a named source.

    M is the Born model's members for ``predicted`` charges (the model loaded once), 1 for
    the others.
    """
    if born_source == "predicted":
        from anisoscreen.model.born_charges import predict_born_charge_members
        from anisoscreen.model.checkpoint import load_model

        loaded = load_model(born_model)
        return lambda structure, _: predict_born_charge_members(loaded, [structure])[0]
    from anisoscreen.ionic_physics.born import born_charges

    return lambda structure, material_id: born_charges(born_source, structure, material_id)[None]


def _load_potential(name: str) -> Any:
    from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential, SevenNetPotential

    if name == HarmonicSpringPotential.name:
        return HarmonicSpringPotential(spring=1.0, cutoff=3.2)
    return SevenNetPotential(name)


def _poly(tensor: np.ndarray) -> float:
    return float(np.trace(tensor) / 3.0)


@dataclass(frozen=True)
class RefineInput:
    """One structure to refine, with its direct predictions.

    Attributes
    ----------
    rank
        Its row in the ranking (or data split) refined.
    eps_inf
        (3, 3) electronic tensor the totals add to eps0.
    direct
        (3, 3) direct eps0, or ``None`` where no ionic model predicted one.
    direct_std
        (3, 3) spread (standard deviation) of the direct model's members, ``None`` for one.
    gap
        Band gap in eV for the FOM (``None``: no FOM).
    direct_figure_of_merit
        The FOM of the direct prediction, kept beside the refined one.
    """

    rank: int
    material_id: str
    formula: str
    structure: Structure
    eps_inf: np.ndarray
    direct: np.ndarray | None
    direct_std: np.ndarray | None = None
    gap: float | None = None
    direct_figure_of_merit: float | None = None


def _refine_one(
    item: RefineInput,
    method: RefineMethod,
    potential: Any,
    charges_of: Callable[[Structure, str], np.ndarray],
    results: ResultsStore | None,
) -> IonicRefinement:
    from anisoscreen.ionic_physics.force_constant_cache import cached_force_constants
    from anisoscreen.ionic_physics.route import (
        blend_ionic,
        ensemble_spread,
        physics_ionic,
        physics_spread,
        site_masses,
        spread_share,
    )

    start = time.perf_counter()
    direct, gap, structure = item.direct, item.gap, item.structure
    row: dict[str, Any] = {
        "material_id": item.material_id,
        "formula": item.formula,
        "rank": item.rank,
        "potential": potential.name,
        "born_source": method.born_source,
        "direct_eps_ionic": direct.tolist() if direct is not None else None,
        "direct_figure_of_merit": item.direct_figure_of_merit,
    }
    try:
        fc, _ = cached_force_constants(structure, potential, results)
    except AnisoscreenError as exc:
        fc, row["error"] = None, str(exc)
    members = None
    if fc is not None:
        try:
            members = charges_of(structure, item.material_id)
        except AnisoscreenError as exc:
            row["error"] = str(exc)
    share = None
    if fc is not None and members is not None:
        result = physics_ionic(structure, members.mean(axis=0), fc, method.min_frequency_thz)
        modes, flags = result.modes, result.flags
        row["physics_eps_ionic"] = result.eps_ionic.tolist()
        assert modes.mode_charges is not None
        assert modes.oscillator_strengths is not None
        row["modes"] = [
            GammaModeDoc(
                frequency_thz=float(modes.frequencies_thz[m]),
                frequency_cm1=float(modes.frequencies_cm1[m]),
                mode_charge=modes.mode_charges[m].tolist(),
                oscillator_strength=modes.oscillator_strengths[m].tolist(),
                eps_contribution=float(result.contributions[m]),
                included=bool(result.included[m]),
            )
            for m in range(len(modes.omega2))
        ]
        row["flags"] = flags
        row["max_residual_force"] = result.max_residual_force
        trusted = method.born_source in method.physics_sources
        physics = result.eps_ionic if trusted and not flags else None
        if len(members) > 1:
            spread = physics_spread(structure, result, members)
            row["physics_spread"] = spread
            if method.spread_ratio is not None and item.direct_std is not None:
                direct_spread = ensemble_spread(item.direct_std)
                share = float(spread_share(direct_spread, spread, method.spread_ratio))
    elif fc is not None:  # no charges: the modes alone
        from anisoscreen.ionic_physics.formula import gamma_modes

        modes = gamma_modes(fc.phi, site_masses(structure))
        row["modes"] = [
            GammaModeDoc(
                frequency_thz=float(modes.frequencies_thz[m]),
                frequency_cm1=float(modes.frequencies_cm1[m]),
                included=False,
            )
            for m in range(len(modes.omega2))
        ]
        row["max_residual_force"] = fc.max_residual_force
        physics = None
    else:
        physics = None
    chosen, row["ionic_method"] = blend_ionic(
        direct, physics, method.physics_weight, method.direct_weight, share
    )
    if row["ionic_method"] == "blend":
        row["physics_share"] = share
    if chosen is not None:
        total = item.eps_inf + chosen
        row["eps_ionic"] = chosen.tolist()
        row["eps_total"] = total.tolist()
        row["eps_total_poly"] = _poly(total)
        if gap is not None and math.isfinite(gap):
            row["figure_of_merit"] = gap * _poly(total)
    row["seconds"] = time.perf_counter() - start
    return IonicRefinement(**row)


def refine_structures(
    items: Iterable[RefineInput],
    method: RefineMethod | None = None,
    results: ResultsStore | None = None,
    on_row: Callable[[IonicRefinement], None] | None = None,
) -> list[IonicRefinement]:
    """The refinement of each item by ``method`` (default: :class:`RefineMethod`'s).

    The potential and the Born model load once. Force constants are read from and written
    to ``results`` (:mod:`anisoscreen.ionic_physics.force_constant_cache`; ``None``: none
    cached); ``on_row`` is called after each row.
    """
    method = method or RefineMethod()
    potential = _load_potential(method.potential)
    charges_of = _charges_source(method.born_source, method.born_model)
    rows = []
    for item in items:
        rows.append(_refine_one(item, method, potential, charges_of, results))
        if on_row is not None:
            on_row(rows[-1])
    return rows


@job(output_schema=IonicRefineOutput)
def refine_ionic(
    ranking: RankingStageOutput | dict[str, Any],
    start: int,
    stop: int,
    method: RefineMethod | dict[str, Any],
    store: dict[str, Any] | None = None,
) -> IonicRefineOutput:
    """Refine rows ``start:stop`` of ``ranking`` by ``method`` (see the module doc)."""
    from anisoscreen.screening.jobs import _report, _results

    begin = time.perf_counter()
    ranking = RankingStageOutput.model_validate(ranking)
    method = RefineMethod.model_validate(method)
    rows = ranking.ranking[start:stop]
    ids = [r.material_id for r in rows]
    wanted = {"$in": ids}
    with _results(store) as results:
        predictions = {
            d.material_id: d
            for d in results.query(PredictionDoc, {"model": ranking.model, "material_id": wanted})
        }
        candidates = {
            c.material_id: c for c in results.query(CandidateDoc, {"material_id": {"$in": ids}})
        }
        items = [
            _refine_input(start + offset, predictions[material_id], candidates[material_id])
            for offset, material_id in enumerate(ids)
        ]
        refinements = refine_structures(
            items,
            method,
            results,
            # one progress bar for all shards: run in order (locally) they count up to the
            # last shard's end, so the total shown is this shard's end, not its own length
            on_row=lambda _: _report("refine", 1, start + len(ids)),
        )
        # what query, table, browser and report show
        results.upsert(RefinementDoc.of(r, predictions[r.material_id]) for r in refinements)
    return IonicRefineOutput(
        model=ranking.model,
        potential=method.potential,
        born_source=method.born_source,
        refinements=refinements,
        n_physics=sum(r.ionic_method in ("physics", "blend") for r in refinements),
        n_flagged=sum(bool(r.flags) for r in refinements),
        seconds=time.perf_counter() - begin,
    )


def _refine_input(rank: int, prediction: PredictionDoc, candidate: CandidateDoc) -> RefineInput:
    """A ranking row's structure and direct predictions."""
    gap = prediction.band_gap if prediction.band_gap is not None else candidate.band_gap
    return RefineInput(
        rank=rank,
        material_id=prediction.material_id,
        formula=prediction.formula_pretty,
        structure=candidate.structure,
        eps_inf=np.asarray(prediction.dielectric_tensor, dtype=float),
        direct=np.asarray(prediction.eps_ionic.tensor) if prediction.eps_ionic else None,
        direct_std=(
            np.asarray(prediction.eps_ionic.tensor_std)
            if prediction.eps_ionic and prediction.eps_ionic.tensor_std is not None
            else None
        ),
        gap=gap,
        direct_figure_of_merit=prediction.figure_of_merit,
    )


@job(output_schema=IonicRefineOutput)
def merge_refinements(shards: list[IonicRefineOutput | dict[str, Any]]) -> IonicRefineOutput:
    """The shards' rows in ranking order, as one output."""
    parts = [IonicRefineOutput.model_validate(s) for s in shards]
    rows = sorted((r for p in parts for r in p.refinements), key=lambda r: r.rank)
    return IonicRefineOutput(
        model=parts[0].model,
        potential=parts[0].potential,
        born_source=parts[0].born_source,
        refinements=rows,
        n_physics=sum(p.n_physics for p in parts),
        n_flagged=sum(p.n_flagged for p in parts),
        seconds=sum(p.seconds for p in parts),
    )


@dataclass
class IonicRefineMaker(Maker):
    """Refine the top ``top_k`` of a ranking with the physics eps0 (see the module doc).

    Parameters
    ----------
    top_k
        Rows of the ranking refined.
    potential
        Potential of the force constants (``sevennet-0``, ``sevennet-l3i5``, ``sevennet-mf-0``;
        ``harmonic-springs`` is the tests' closed-form stand-in).
    born_source
        Born charges: ``nominal`` (formal charges), ``dfpt`` (the data set's, where held) or
        ``predicted`` (``born_model``'s, :mod:`anisoscreen.model.born_charges`).
    min_frequency_thz
        Optical modes below this (THz) are left out (and flag the row when polar).
    physics_sources
        Born sources whose unflagged physics eps0 replaces the direct one (default: DFPT).
    born_model
        The model with a Born head that ``born_source="predicted"`` uses.
    physics_weight
        Where the physics eps0 is used, the reported value is ``direct_weight * direct +
        physics_weight * physics`` (``ionic_method`` ``blend``; weight 1 and no direct
        weight: the physics value alone, ``physics``). :meth:`for_charges` sets the measured
        weights of each Born source.
    direct_weight
        The direct value's weight in that blend; ``None``: ``1 - physics_weight``.
    spread_ratio
        Weigh each row's blend by the two ensembles' spreads instead (inverse variance,
        :func:`~anisoscreen.ionic_physics.route.spread_share`; ``physics_weight`` then scales
        the physics value and ``direct_weight`` must be ``None``): the physics value's share
        is ``s_d^2 / (s_d^2 + spread_ratio s_p^2)``, ``s_d`` the direct model's member spread
        and ``s_p`` that of the physics eps0 over the Born model's members. Rows without both
        spreads (one member) keep the constant blend.
    shard_size
        Rows per job.
    store
        Results-store settings overrides (where the predictions and structures are read).
    """

    name: str = "refine ionic"
    top_k: int = 200
    potential: str = "sevennet-0"
    born_source: str = "nominal"
    min_frequency_thz: float = 1.0
    shard_size: int = 50
    store: dict[str, Any] | None = None
    physics_sources: tuple[str, ...] = PHYSICS_SOURCES
    born_model: str = DEFAULT_BORN_MODEL
    physics_weight: float = 1.0
    direct_weight: float | None = None
    spread_ratio: float | None = None

    def __post_init__(self) -> None:
        self.physics_sources = tuple(self.physics_sources)  # a list after a JSON round trip
        if not 0.0 < self.physics_weight <= 1.0:
            raise AnisoscreenError("physics_weight must be in (0, 1]")
        if self.direct_weight is not None and not 0.0 <= self.direct_weight <= 1.0:
            raise AnisoscreenError("direct_weight must be in [0, 1]")
        if self.spread_ratio is not None and not self.spread_ratio > 0.0:
            raise AnisoscreenError("spread_ratio must be positive")
        if self.spread_ratio is not None and self.direct_weight is not None:
            raise AnisoscreenError("give direct_weight or spread_ratio, not both")

    @classmethod
    def for_charges(cls, born_source: str, **fields: Any) -> IonicRefineMaker:
        """The refine stage with the measured best use of a Born source's physics eps0.

        On the test split (``docs/ionic-physics.md``): ``dfpt`` charges beat the direct model
        with the physics value alone; ``predicted`` ones (``anisonet-mp-born``) help most as a
        blend with SevenNet-l3i5 force constants (:data:`PREDICTED_POTENTIAL`), weighted per
        row by the spreads, fitted on validation (:data:`PREDICTED_BLENDS`, also for
        SevenNet-0 when ``potential`` names it); with ``nominal`` ones the direct value is
        kept (the stage adds the Gamma-mode analysis). A ``physics_weight`` given replaces
        the whole of the table's blend.
        """
        recipes: dict[str, dict[str, Any]] = {
            "dfpt": {"physics_sources": ("dfpt",)},
            "predicted": {"physics_sources": ("predicted",)},
            "nominal": {"physics_sources": PHYSICS_SOURCES},
        }
        if born_source not in recipes:
            raise AnisoscreenError(
                f"unknown Born source {born_source!r}; use one of {', '.join(recipes)}"
            )
        recipe = recipes[born_source]
        if born_source == "predicted":
            potential = fields.get("potential", PREDICTED_POTENTIAL)
            recipe = {**recipe, "potential": potential}
            if "physics_weight" not in fields:  # the blend measured for this potential
                if potential not in PREDICTED_BLENDS:
                    raise AnisoscreenError(
                        f"no blend of predicted charges is measured for potential "
                        f"{potential!r}; use one of {', '.join(PREDICTED_BLENDS)} or "
                        "give physics_weight"
                    )
                recipe.update(asdict(PREDICTED_BLENDS[potential]))
        return cls(born_source=born_source, **{**recipe, **fields})

    @property
    def method(self) -> RefineMethod:
        """How each row's eps0 is computed: this maker's fields less the sharding and store."""
        return RefineMethod(**{name: getattr(self, name) for name in RefineMethod.model_fields})

    def make(self, ranking: Any) -> Flow:
        """Shard jobs over the ranking's first ``top_k`` rows and a merging job."""
        shards = []
        for start, stop in shard_bounds(self.top_k, max(1, self.shard_size)):
            shard = refine_ionic(ranking, start, stop, self.method, self.store)
            shard.name = f"{self.name} {start}-{stop}"
            shards.append(shard)
        merge = merge_refinements([s.output for s in shards])
        merge.name = f"{self.name} merge"
        return Flow([*shards, merge], output=merge.output, name=self.name)
