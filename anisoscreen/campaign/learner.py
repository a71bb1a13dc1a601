"""How a campaign learns its labels: fine-tuning the ensemble, or a residual GP on it.

One code path for the real campaign (:mod:`~anisoscreen.campaign.rounds`) and its offline
simulation (:mod:`~anisoscreen.campaign.simulate`):

* ``finetune``: every member is fine-tuned on the labels after each round and the pool is
  re-predicted; the strategies see the members' values.
* ``gp``: the networks stay frozen. The pool's coordinates (:func:`pool_coordinates`: the
  member-mean embedding from the prediction pass, the log prediction and, optionally, the
  vacuum geometry, on the pool's principal axes) carry a
  :class:`~anisoscreen.campaign.residual.ResidualGP` fitted on every label so far to the
  residual of the log objective; its sigma is rescaled by the labels' leave-one-out z-scores
  (:func:`~anisoscreen.campaign.residual.loo_scale`), and the strategies see draws of the
  posterior (:func:`residual_posterior`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from anisoscreen.campaign.residual import (
    EmbeddingSpace,
    Posterior,
    ResidualGP,
    loo_scale,
    posterior_samples,
)
from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "GEOMETRY_SCALE",
    "LEARNERS",
    "POSTERIOR_SAMPLES",
    "LogSpace",
    "check_carry_siblings",
    "check_learner",
    "geometry_columns",
    "pool_coordinates",
    "posterior_values",
    "residual_posterior",
    "with_carried_labels",
    "with_siblings",
]

LEARNERS = ("finetune", "gp")
"""The ways a campaign learns its labels."""

POSTERIOR_SAMPLES = 32
"""Posterior draws the strategies see in place of ensemble members."""


def check_learner(name: str) -> str:
    """``name`` if it is a learner, else a one-line error."""
    if name not in LEARNERS:
        raise AnisoscreenError(f"unknown learner {name!r}; use one of {', '.join(LEARNERS)}")
    return name


class LogSpace:
    """``log`` of a positive objective (a_r, eps_poly), identity for the others."""

    def __init__(self, objective: str) -> None:
        self.log = objective in ("ar", "eps-poly")

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Objective values -> the space the GP and the strategies work in."""
        return np.log(np.maximum(values, 1e-9)) if self.log else np.asarray(values, float)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Back to objective values."""
        return np.exp(values) if self.log else np.asarray(values, float)


def check_carry_siblings(carry: bool, learner: str, objective: str) -> None:
    """A one-line error unless labels can be carried to siblings with these settings."""
    from anisoscreen.screening.objectives import needs_ionic

    if carry and (learner != "gp" or needs_ionic(objective)):
        raise AnisoscreenError(
            "carrying labels to siblings needs the gp learner and an eps_inf objective "
            "(ar, eps-poly, birefringence)"
        )


GEOMETRY_SCALE = (0.2, 0.4)
"""The least scale of the :func:`geometry_columns` in the GP's coordinates: a vacuum fraction
0.2 apart, or widest slabs a factor e^0.4 ~ 1.5 apart. On a pool of dense crystals with a few
padded ones, standardising by the pool's own spread would let those few swamp the space."""


def geometry_columns(structures: Sequence[Structure]) -> np.ndarray:
    """The vacuum geometry of each structure, ``(n, 2)``: largest vacuum fraction, log slab.

    The largest vacuum fraction over the low-index planes
    (:func:`~anisoscreen.geometry.plane_vacuum_fractions`) and the log width of the largest
    empty slab (:func:`~anisoscreen.geometry.largest_empty_slab`): what tells a padded layer
    from its stack, which the atoms' embedding, blind beyond the cutoff, does not.
    """
    from anisoscreen.geometry import largest_empty_slab, plane_vacuum_fractions

    rows = [
        (
            max(q for q, _ in plane_vacuum_fractions(s)),
            np.log(max(largest_empty_slab(s)[0], 1e-3)),
        )
        for s in structures
    ]
    return np.asarray(rows, dtype=float).reshape(len(rows), 2)


def pool_coordinates(
    embedding: np.ndarray,
    base: np.ndarray,
    extra: np.ndarray | None = None,
    extra_scale: Sequence[float] | None = GEOMETRY_SCALE,
) -> np.ndarray:
    """The pool's GP and diversity coordinates (:class:`EmbeddingSpace`, fitted on the pool).

    Parameters
    ----------
    embedding
        Member-mean structure embeddings, ``(n, d)``.
    base
        The ensemble's (log) prediction of the objective, ``(n,)``.
    extra
        More columns, ``(n, k)`` (e.g. :func:`geometry_columns`), or ``None``.
    extra_scale
        The least scale each extra column is standardised by (``None``: its pool spread).
    """
    columns = [np.asarray(embedding, float), np.asarray(base, float)[:, None]]
    floor = np.zeros(columns[0].shape[1] + 1)
    if extra is not None:
        columns.append(np.asarray(extra, float).reshape(len(base), -1))
        least = np.zeros(columns[-1].shape[1]) if extra_scale is None else extra_scale
        floor = np.concatenate([floor, np.asarray(least, dtype=float)])
    features = np.column_stack(columns)
    return EmbeddingSpace().fit(features, floor).transform(features)


def residual_posterior(
    base: np.ndarray,
    coords: np.ndarray,
    labelled: np.ndarray,
    observed: np.ndarray,
    fit_offset: bool = False,
) -> tuple[Posterior, float]:
    """The pool's posterior of the (log) objective after the labels, and its sigma scale.

    Parameters
    ----------
    base
        The frozen ensemble's (log) prediction, ``(n,)``.
    coords
        :func:`pool_coordinates`, ``(n, d)``.
    labelled
        Indices of the labelled candidates (at least one).
    observed
        Their (log) observed objective, in the order of ``labelled``.
    fit_offset
        A constant prior mean (the labels' shrunk mean residual) in place of zero.

    Returns
    -------
    (Posterior, float)
        ``base`` plus the GP's residual mean, and its sigma times the factor that makes the
        labels' leave-one-out RMS z-score one (that factor is returned too).
    """
    labelled = np.asarray(labelled, dtype=int)
    residual = np.asarray(observed, float) - base[labelled]
    gp = ResidualGP(fit_offset=fit_offset).fit(coords[labelled], residual)
    mean, sigma = gp.predict(coords)
    loo_mean, loo_sigma = gp.loo()
    scale = loo_scale(residual, loo_mean, loo_sigma)
    return Posterior(base + mean, sigma * scale), scale


CARRIED_SIGMA = 0.05
"""Standard deviation (log units) given to a label carried to a sibling by the laminate law:
MP's DFPT of padded van der Waals stacks follows the law within about 2 %."""


def with_carried_labels(
    posterior: Posterior,
    indices: np.ndarray,
    carried: np.ndarray,
    sigma: float = CARRIED_SIGMA,
) -> Posterior:
    """``posterior`` combined with labels carried to siblings.

    The labels come from :mod:`~anisoscreen.campaign.siblings`. Each carried (log) value is
    an independent Gaussian measurement of standard deviation ``sigma``: the two are
    combined by their precisions, so a carried label dominates a broad posterior and is
    tempered by a confident one.
    """
    mean, spread = posterior.mean.copy(), posterior.sigma.copy()
    if len(indices):
        prior_precision = 1.0 / spread[indices] ** 2
        precision = prior_precision + 1.0 / sigma**2
        mean[indices] = (mean[indices] * prior_precision + carried / sigma**2) / precision
        spread[indices] = 1.0 / np.sqrt(precision)
    return Posterior(mean, spread)


def with_siblings(
    posterior: Posterior,
    table: np.ndarray,
    labelled: Sequence[int],
    tensors: Sequence[np.ndarray],
    objective: str,
) -> tuple[Posterior, np.ndarray]:
    """``posterior`` (of the log objective) with every label carried to its siblings.

    ``table``: :func:`~anisoscreen.campaign.siblings.sibling_table` of the pool;
    ``labelled`` and ``tensors``: the labelled candidates and their DFT eps_inf (3x3). An
    electronic objective only (the DFT labels carried are eps_inf). Also returns the indices
    of the candidates a label was carried to: the laminate law gives them, so a campaign
    spends no DFT calculation on them.
    """
    from anisoscreen.campaign.siblings import carried_values
    from anisoscreen.screening.objectives import tensor_values

    indices, values = carried_values(
        table, labelled, tensors, lambda stacked: tensor_values(stacked, objective)
    )
    carried = with_carried_labels(posterior, indices, LogSpace(objective).forward(values))
    return carried, indices


def posterior_values(posterior: Posterior, seed: Sequence[int]) -> np.ndarray:
    """:data:`POSTERIOR_SAMPLES` draws with the posterior's exact moments (seeded by ``seed``)."""
    return posterior_samples(posterior, POSTERIOR_SAMPLES, np.random.default_rng(list(seed)))
