"""Acquisition strategies: which unlabelled candidates to validate next.

Every strategy sees the ensemble's objective values, shape ``(members, candidates)``, and
returns the indices of the batch, best first. Score-based strategies (greedy, UCB,
exploration, random) rank by one score per candidate; Thompson sampling draws one ensemble
member per pick and takes that member's best. A :class:`DiversityGuard` caps how many picks
of one batch share a group (a reduced composition or a structure prototype), so that one
batch is not ten near-identical layered compounds. :class:`EmbeddingDiversity` adds a minimum
distance between the picks of a batch in the network's embedding space
(:class:`~anisoscreen.campaign.residual.EmbeddingSpace`): walking down the scores, a candidate
closer than ``radius`` to a pick already taken is passed over; if the batch cannot be filled
so, the radius is halved and the walk repeated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "STRATEGIES",
    "Acquisition",
    "DiversityGuard",
    "EmbeddingDiversity",
    "Exploration",
    "Greedy",
    "RandomChoice",
    "Thompson",
    "UpperConfidenceBound",
    "group_labels",
    "make_strategy",
]


@dataclass
class DiversityGuard:
    """At most ``max_per_group`` picks of one batch per group label.

    Parameters
    ----------
    groups
        One label per candidate (e.g. reduced formula or prototype); ``None`` disables.
    max_per_group
        Largest number of picks sharing a label; ``0`` disables the guard.
    """

    groups: Sequence[str] | None = None
    max_per_group: int = 0

    def admits(self, index: int, taken: Counter) -> bool:
        """Whether candidate ``index`` may join a batch whose group counts are ``taken``."""
        if self.groups is None or self.max_per_group <= 0:
            return True
        return taken[self.groups[index]] < self.max_per_group

    def take(self, index: int, taken: Counter) -> None:
        """Count candidate ``index`` in ``taken``."""
        if self.groups is not None:
            taken[self.groups[index]] += 1

    def relaxed(self) -> DiversityGuard | None:
        """A looser guard to fill a batch this one cannot (``None``: no looser one)."""
        return None


@dataclass
class EmbeddingDiversity(DiversityGuard):
    """The group guard plus a minimum embedding distance between the picks of one batch.

    Parameters
    ----------
    coords
        Embedding coordinates of every candidate, ``(n, d)``.
    radius
        Smallest distance from a pick to the picks already in its batch.
    min_radius
        Below this the distance test is dropped (only the group guard remains).
    """

    coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    radius: float = 0.0
    min_radius: float = 1e-3

    def admits(self, index: int, taken: Counter) -> bool:
        if not super().admits(index, taken):
            return False
        picks = [key[1] for key in taken if isinstance(key, tuple) and key[0] == _PICK]
        if not picks or self.radius <= 0:
            return True
        distances = np.linalg.norm(self.coords[picks] - self.coords[index], axis=1)
        return bool(distances.min() >= self.radius)

    def take(self, index: int, taken: Counter) -> None:
        super().take(index, taken)
        taken[(_PICK, index)] += 1  # the picks of the batch, beside the group counts

    def relaxed(self) -> DiversityGuard | None:
        if self.radius <= self.min_radius:
            return None
        radius = self.radius / 2 if self.radius / 2 > self.min_radius else 0.0
        return replace(self, radius=radius)

    @classmethod
    def from_pool(
        cls,
        coords: np.ndarray,
        quantile: float = 0.1,
        groups: Sequence[str] | None = None,
        max_per_group: int = 0,
    ) -> EmbeddingDiversity:
        """The guard whose radius is the ``quantile`` of the pool's pairwise distances."""
        coords = np.asarray(coords, dtype=float)
        sample = coords[np.random.default_rng(0).permutation(len(coords))[:500]]
        distances = np.linalg.norm(sample[:, None] - sample[None], axis=-1)
        upper = distances[np.triu_indices(len(sample), k=1)]
        radius = float(np.quantile(upper, quantile)) if len(upper) else 0.0
        return cls(groups, max_per_group, coords, radius)


_PICK = "#pick"


def _check(values: np.ndarray, available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.atleast_2d(np.asarray(values, dtype=float))
    available = np.asarray(available, dtype=bool)
    if available.shape != (values.shape[1],):
        raise ValueError(f"available mask {available.shape} does not match {values.shape}")
    return values, available


class Acquisition:
    """One strategy: ``select`` a batch of candidate indices.

    Subclasses define :meth:`scores` (higher is better); :meth:`select` walks the candidates
    by descending score, skipping unavailable ones and those the guard refuses.
    """

    name: ClassVar[str] = ""
    uses_model: ClassVar[bool] = True
    """Whether the picks depend on the model (random ones do not)."""

    def scores(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One score per candidate from member values of shape ``(members, candidates)``."""
        raise NotImplementedError

    def select(
        self,
        values: np.ndarray,
        available: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
        guard: DiversityGuard | None = None,
    ) -> list[int]:
        """Indices of up to ``batch_size`` available candidates, best first.

        Parameters
        ----------
        values
            Objective value of every candidate by every ensemble member, ``(members, n)``.
        available
            Boolean mask of the candidates that may be picked (not yet labelled).
        batch_size
            Number of picks.
        rng
            Random generator (random and Thompson strategies, tie-breaking nowhere else).
        guard
            Optional diversity guard.
        """
        values, available = _check(values, available)
        scores = self.scores(values, rng)
        order = np.argsort(-scores, kind="stable")
        return _fill(order, available, batch_size, guard or DiversityGuard())


def _fill(
    order: np.ndarray, available: np.ndarray, batch_size: int, guard: DiversityGuard
) -> list[int]:
    picks: list[int] = []
    taken: Counter = Counter()
    current: DiversityGuard | None = guard
    while current is not None and len(picks) < batch_size:
        for index in order:
            if len(picks) == batch_size:
                break
            if available[index] and int(index) not in picks and current.admits(int(index), taken):
                picks.append(int(index))
                current.take(int(index), taken)
        current = current.relaxed()
    return picks


class Greedy(Acquisition):
    """Exploitation: the ensemble mean."""

    name = "greedy"

    def scores(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return values.mean(axis=0)


@dataclass
class UpperConfidenceBound(Acquisition):
    """Mean plus ``kappa`` ensemble standard deviations (DTNet: kappa = 1.5)."""

    kappa: float = 1.5
    name: ClassVar[str] = "ucb"

    def scores(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        return values.mean(axis=0) + self.kappa * spread


class Exploration(Acquisition):
    """Pure exploration: the ensemble standard deviation."""

    name = "exploration"

    def scores(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(values) < 2:
            raise AnisoscreenError("exploration needs an ensemble of at least two members")
        return values.std(axis=0, ddof=1)


class RandomChoice(Acquisition):
    """The baseline: uniformly random candidates (the model plays no part)."""

    name = "random"
    uses_model = False

    def scores(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(rng.random(values.shape[1]))


class Thompson(Acquisition):
    """Thompson-style sampling: each pick draws one ensemble member and takes its best."""

    name = "thompson"

    def select(
        self,
        values: np.ndarray,
        available: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
        guard: DiversityGuard | None = None,
    ) -> list[int]:
        values, available = _check(values, available)
        current: DiversityGuard | None = guard or DiversityGuard()
        open_ = available.copy()
        taken: Counter = Counter()
        picks: list[int] = []
        while len(picks) < batch_size and current is not None:
            member = values[rng.integers(len(values))]
            order = np.argsort(-member, kind="stable")
            choice = next(
                (int(i) for i in order if open_[i] and current.admits(int(i), taken)), None
            )
            if choice is None:
                current = current.relaxed()
                continue
            picks.append(choice)
            open_[choice] = False
            current.take(choice, taken)
        return picks


STRATEGIES: dict[str, type[Acquisition]] = {
    cls.name: cls for cls in (Greedy, UpperConfidenceBound, Exploration, RandomChoice, Thompson)
}
"""Strategy name -> class."""


def make_strategy(name: str, kappa: float = 1.5) -> Acquisition:
    """The strategy called ``name`` (``kappa`` is used by UCB only)."""
    if name not in STRATEGIES:
        raise AnisoscreenError(f"unknown strategy {name!r}; choose from {sorted(STRATEGIES)}")
    if name == "ucb":
        return UpperConfidenceBound(kappa=kappa)
    return STRATEGIES[name]()


def _prototype(structure: Structure) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        number = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
    except Exception:  # spglib failure on a pathological cell
        number = 0
    return f"{structure.composition.anonymized_formula}-{number}"


def group_labels(structures: Sequence[Structure], group_by: str) -> list[str] | None:
    """Group label of every structure for the :class:`DiversityGuard`.

    Parameters
    ----------
    structures
        The candidates.
    group_by
        ``"composition"`` (reduced formula), ``"prototype"`` (anonymised formula plus space
        group number, so MoS2, WS2 and MoSe2 in one structure type share a label) or
        ``"none"``.
    """
    if group_by == "none":
        return None
    if group_by == "composition":
        return [s.composition.reduced_formula for s in structures]
    if group_by == "prototype":
        return [_prototype(s) for s in structures]
    raise AnisoscreenError(f"unknown group_by {group_by!r}; use composition, prototype or none")
