"""The physics route for one structure: Born charges x Gamma force constants -> eps0 and modes.

Soft and unstable modes are the route's failure mode (a potential that softens a phonon
sends ``1 / omega^2`` up): every optical mode below ``min_frequency_thz`` (imaginary ones
included) is left out of the mode sum, so one soft mode can never silently produce an eps0
in the thousands. A mode left out matters only if it is polar: the result is flagged when a
left-out mode would have added more than ``max_dropped`` to eps0_poly even at the cap
frequency ``min_frequency_thz`` (a non-polar rotation of octahedra that the potential makes
unstable does not enter eps0 at all). The flags say why a value should not be trusted:

* ``imaginary_modes``: a polar optical mode with ``omega^2 < 0`` beyond the numerical noise;
* ``soft_modes``: a polar real optical mode below ``min_frequency_thz``;
* ``large_residual_forces``: the potential's forces on the input cell exceed
  ``max_residual_force`` (it disagrees with DFT about the structure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from anisoscreen.ionic_physics.force_constants import ForceConstants
from anisoscreen.ionic_physics.formula import (
    EPS0_PREFACTOR,
    EV_A2_AMU_TO_THZ,
    GammaModes,
    eps_ionic_from_modes,
    gamma_modes,
    impose_born_asr,
    modes_with_charges,
)

__all__ = [
    "IMAGINARY_TOL_THZ",
    "PhysicsIonic",
    "blend_ionic",
    "ensemble_spread",
    "physics_ionic",
    "physics_spread",
    "site_masses",
    "spread_share",
]

IMAGINARY_TOL_THZ = 0.1
"""Imaginary frequencies smaller than this (THz) are taken as numerical noise, not instability."""


@dataclass(frozen=True)
class PhysicsIonic:
    """eps0 of one structure by the physics route, with its modes and flags.

    Attributes
    ----------
    eps_ionic
        (3, 3) static ionic tensor from the modes kept.
    modes
        The optical Gamma modes (with mode charges and oscillator strengths).
    included
        (3N - 3,) which modes entered the sum.
    contributions
        (3N - 3,) each mode's share of ``tr(eps0) / 3`` (zero for the modes left out).
    flags
        Names of the failure modes found (see the module docstring); empty when clean.
    n_dropped
        Optical modes below the cap frequency (left out), polar or not.
    max_residual_force
        Largest force on the input cell under the potential, eV/A.
    """

    eps_ionic: np.ndarray
    modes: GammaModes
    included: np.ndarray
    contributions: np.ndarray
    flags: list[str] = field(default_factory=list)
    max_residual_force: float = 0.0
    n_dropped: int = 0


def site_masses(structure: Structure) -> np.ndarray:
    """(N,) atomic masses in amu of the sites of ``structure``, in its order."""
    return np.array([site.specie.atomic_mass for site in structure], dtype=float)


def physics_ionic(
    structure: Structure,
    born: np.ndarray,
    force_constants: ForceConstants,
    min_frequency_thz: float = 1.0,
    max_residual_force: float = 0.2,
    max_dropped: float = 0.5,
) -> PhysicsIonic:
    """eps0 of ``structure`` from its Born charges (N, 3, 3) and Gamma force constants.

    The charges get the acoustic sum rule imposed; modes below ``min_frequency_thz``
    (imaginary ones included) are left out, and flagged when polar beyond ``max_dropped``
    (see the module docstring).
    """
    masses = site_masses(structure)
    charges = impose_born_asr(born)
    modes = gamma_modes(force_constants.phi, masses, charges)
    frequencies = modes.frequencies_thz
    included = frequencies >= min_frequency_thz
    volume = float(structure.volume)
    assert modes.oscillator_strengths is not None
    # what each mode would add to eps0_poly at the cap frequency
    omega2_cap = (min_frequency_thz / EV_A2_AMU_TO_THZ) ** 2
    at_cap = EPS0_PREFACTOR / volume * np.trace(modes.oscillator_strengths, axis1=1, axis2=2)
    polar_dropped = ~included & (at_cap / (3.0 * omega2_cap) > max_dropped)
    flags: list[str] = []
    if np.any(polar_dropped & (frequencies < -IMAGINARY_TOL_THZ)):
        flags.append("imaginary_modes")
    if np.any(polar_dropped & (frequencies >= -IMAGINARY_TOL_THZ)):
        flags.append("soft_modes")
    residual = force_constants.max_residual_force
    if residual > max_residual_force:
        flags.append("large_residual_forces")
    tensor = eps_ionic_from_modes(modes, volume, included) if included.any() else np.zeros((3, 3))
    contributions = np.zeros(len(frequencies))
    if included.any():
        traces = np.trace(modes.oscillator_strengths[included], axis1=1, axis2=2)
        contributions[included] = EPS0_PREFACTOR / volume * traces / modes.omega2[included] / 3.0
    return PhysicsIonic(
        eps_ionic=0.5 * (tensor + tensor.T),
        modes=modes,
        included=included,
        contributions=contributions,
        flags=flags,
        max_residual_force=residual,
        n_dropped=int((~included).sum()),
    )


def physics_spread(
    structure: Structure, physics: PhysicsIonic, member_charges: np.ndarray
) -> float:
    """:func:`ensemble_spread` of the physics eps0 over a Born model's members' charges.

    ``physics`` is :func:`physics_ionic`'s result for ``structure`` (its modes and the modes
    it kept); ``member_charges`` is (M, N, 3, 3), M > 1: each member's charges on the same
    modes, so the spread is that of the charges alone.
    """
    masses = site_masses(structure)
    volume = float(structure.volume)
    included = physics.included
    tensors = np.zeros((len(member_charges), 3, 3))
    if included.any():
        for k, charges in enumerate(member_charges):
            modes = modes_with_charges(physics.modes, masses, impose_born_asr(charges))
            tensors[k] = eps_ionic_from_modes(modes, volume, included)
    return float(ensemble_spread(tensors.std(axis=0, ddof=1)))


def ensemble_spread(tensor_std: np.ndarray) -> np.ndarray:
    """RMS over the six unique components of (..., 3, 3) ensemble standard deviations."""
    upper = np.triu_indices(3)
    return np.sqrt((np.asarray(tensor_std)[..., upper[0], upper[1]] ** 2).mean(axis=-1))


def spread_share(
    direct_spread: np.ndarray | float, physics_spread: np.ndarray | float, ratio: float
) -> np.ndarray:
    """The physics value's share ``s_d^2 / (s_d^2 + ratio s_p^2)`` by inverse variance.

    Two estimates with independent errors combine best in inverse proportion to their
    variances; ``ratio`` is the physics variance's weight against the direct one (fitted: the
    charges' spread is only part of the physics route's error). A zero direct spread gives 0.
    """
    direct_var = np.asarray(direct_spread, dtype=float) ** 2
    physics_var = ratio * np.asarray(physics_spread, dtype=float) ** 2
    return np.where(direct_var > 0, direct_var / np.maximum(direct_var + physics_var, 1e-300), 0)


def blend_ionic(
    direct: np.ndarray | None,
    physics: np.ndarray | None,
    physics_weight: float = 1.0,
    direct_weight: float | None = None,
    physics_share: float | None = None,
) -> tuple[np.ndarray | None, str]:
    """``(eps0, method)``: the value a refinement reports from its two routes.

    ``physics`` is the physics eps0 where it may be used (``None`` where it is flagged or its
    Born source is not trusted). With both, ``direct_weight direct + physics_weight physics``
    (``direct_weight=None``: ``1 - physics_weight``) is the ``blend``, or the physics value
    alone (``physics``) at weight 1 with no direct weight; otherwise the ``direct`` value.
    With a ``physics_share`` w (:func:`spread_share`), the blend is ``w physics_weight physics
    + (1 - w) direct`` instead: ``physics_weight`` scales the physics value, and
    ``direct_weight`` is not used.
    """
    if physics is not None and direct is not None and physics_share is not None:
        share = float(physics_share)
        return share * physics_weight * physics + (1.0 - share) * direct, "blend"
    kept = 1.0 - physics_weight if direct_weight is None else direct_weight
    if physics is not None and direct is not None and (physics_weight < 1.0 or kept > 0.0):
        return kept * direct + physics_weight * physics, "blend"
    if physics is not None:
        return physics, "physics"
    return direct, "direct"
