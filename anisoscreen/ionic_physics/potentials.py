"""Potentials for Gamma force constants: SevenNet checkpoints and a harmonic spring model.

Both compute the energy of a batch of displaced copies of one cell in torch on a neighbour
list fixed at the undisplaced cell (the displacements are 0.01 A), and the forces as minus
its gradient with respect to the positions.

* :class:`SevenNetPotential`: a SevenNet checkpoint from the installed ``sevenn`` wheel
  (``7net-0``, as the package's pretrained features; ``7net-l3i5``; the multi-fidelity
  ``7net-mf-0`` at its PBE fidelity, the functional of the Materials Project's DFPT), float32
  like the checkpoint, all copies of a batch in one graph.
* :class:`HarmonicSpringPotential`: ``E = sum_pairs k/2 (r0_hat . (dr - dr0))^2`` over the
  pairs within a cutoff, the harmonic limit of central springs at rest in the given cell:
  exactly quadratic, so its force constants are known in closed form (the tests' stand-in).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.third_party import module_children, sevenn_keys

__all__ = ["SEVENNET_CHECKPOINTS", "HarmonicSpringPotential", "SevenNetPotential"]

SEVENNET_CHECKPOINTS: dict[str, str] = {
    "sevennet-0": "7net-0",
    "sevennet-l3i5": "7net-l3i5",
    "sevennet-mf-0": "7net-mf-0",
}
"""Potential names and the ``sevenn`` checkpoint each loads."""
FIDELITY = "PBE"
"""The fidelity (``sevenn``'s modality) a multi-fidelity checkpoint is evaluated at."""


def _edges(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, neighbour, image shift in A)`` of the pairs within ``cutoff``."""
    centre, neighbour, images, _ = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    return centre, neighbour, np.asarray(images) @ structure.lattice.matrix


def _forces_of(
    energy: Callable[[torch.Tensor], torch.Tensor],
    positions: np.ndarray,
    dtype: torch.dtype,
    batch_size: int,
) -> np.ndarray:
    """Minus the gradient of ``energy`` (summed over a batch) for each copy, in batches."""
    out = []
    for start in range(0, len(positions), batch_size):
        chunk = torch.tensor(positions[start : start + batch_size], dtype=dtype)
        chunk.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(chunk), chunk)
        out.append(-grad.detach().double().numpy())
    return np.concatenate(out)


class HarmonicSpringPotential:
    """Harmonic central springs between all pairs within ``cutoff``, at rest in the cell.

    Parameters
    ----------
    spring
        Spring constant in eV/A^2, or a function ``(Z_i, Z_j, distance) -> k``.
    cutoff
        Pair cutoff in A.
    """

    name = "harmonic-springs"

    def __init__(
        self, spring: float | Callable[[int, int, float], float] = 1.0, cutoff: float = 3.0
    ) -> None:
        self.spring = spring
        self.cutoff = cutoff

    def forces(self, structure: Structure, positions: np.ndarray) -> np.ndarray:
        """Forces (B, N, 3) in eV/A of the copies ``positions`` (B, N, 3)."""
        centre, neighbour, shift = _edges(structure, self.cutoff)
        rest = structure.cart_coords[neighbour] - structure.cart_coords[centre] + shift
        length = np.linalg.norm(rest, axis=1)
        numbers = [site.specie.Z for site in structure]
        springs = np.array(
            [
                self.spring(numbers[i], numbers[j], d) if callable(self.spring) else self.spring
                for i, j, d in zip(centre, neighbour, length, strict=True)
            ]
        )
        unit = torch.tensor(rest / length[:, None])
        rest_t = torch.tensor(rest)
        k = torch.tensor(springs)
        c, nb, sh = torch.tensor(centre), torch.tensor(neighbour), torch.tensor(shift)

        def energy(pos: torch.Tensor) -> torch.Tensor:
            stretch = ((pos[:, nb] - pos[:, c] + sh - rest_t) * unit).sum(-1)
            return 0.25 * (k * stretch**2).sum()  # each pair is listed twice

        return _forces_of(energy, positions, torch.float64, len(positions) or 1)


class SevenNetPotential:
    """A SevenNet checkpoint of the ``sevenn`` wheel as a :class:`Potential`.

    Parameters
    ----------
    name
        One of :data:`SEVENNET_CHECKPOINTS`.
    batch_size
        Displaced copies per forward/backward pass.
    device
        Torch device.
    """

    def __init__(self, name: str = "sevennet-0", batch_size: int = 8, device: str = "cpu") -> None:
        if name not in SEVENNET_CHECKPOINTS:
            raise AnisoscreenError(
                f"unknown SevenNet potential {name!r}; known: {', '.join(SEVENNET_CHECKPOINTS)}"
            )
        import sevenn.util as sevenn_util

        self.name = name
        self.batch_size = batch_size
        self.device = torch.device(device)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tensor-product accelerator" notices
            model = sevenn_util.load_checkpoint(SEVENNET_CHECKPOINTS[name]).build_model()
        model.set_is_batch_data(True)
        self.cutoff = float(model.cutoff) if hasattr(model, "cutoff") else 5.0
        self._keys = sevenn_keys()
        # everything up to the total energy; the force/stress head is replaced by autograd
        self._modules: list[torch.nn.Module] = []
        for key, module in module_children(model):
            if key == "force_output":
                break
            assert module is not None
            self._modules.append(module.to(self.device).eval())
        for module in self._modules:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        assert model.type_map is not None
        self._type_map = {int(z): int(index) for z, index in model.type_map.items()}
        modal_map = getattr(model, "modal_map", None)
        self._fidelity = int(modal_map[FIDELITY]) if modal_map else None

    def forces(self, structure: Structure, positions: np.ndarray) -> np.ndarray:
        """Forces (B, N, 3) in eV/A of the copies ``positions`` (B, N, 3)."""
        key = self._keys
        numbers = [site.specie.Z for site in structure]
        unknown = sorted({z for z in numbers if z not in self._type_map})
        if unknown:
            raise AnisoscreenError(f"{self.name} does not know atomic numbers {unknown}")
        centre, neighbour, shift = _edges(structure, self.cutoff)
        n, e = len(numbers), len(centre)
        types = torch.tensor([self._type_map[z] for z in numbers], device=self.device)
        atomic = torch.tensor(numbers, device=self.device)
        c = torch.tensor(centre, device=self.device)
        nb = torch.tensor(neighbour, device=self.device)
        sh = torch.tensor(shift, dtype=torch.float32, device=self.device)

        def energy(pos: torch.Tensor) -> torch.Tensor:
            b = pos.shape[0]
            offsets = (torch.arange(b, device=self.device) * n).repeat_interleave(e)
            vec = (pos[:, nb] - pos[:, c] + sh).reshape(-1, 3)
            data = {
                key.NODE_FEATURE: types.repeat(b),
                key.ATOMIC_NUMBERS: atomic.repeat(b),
                key.EDGE_IDX: torch.stack([c.repeat(b) + offsets, nb.repeat(b) + offsets]),
                key.EDGE_VEC: vec,
                key.BATCH: torch.arange(b, device=self.device).repeat_interleave(n),
                key.NUM_ATOMS: torch.full((b,), n, device=self.device),
            }
            if self._fidelity is not None:  # one fidelity index per copy
                data[key.MODAL_TYPE] = torch.full((b,), self._fidelity, device=self.device)
            for module in self._modules:
                data = module(data)
            return data[key.PRED_TOTAL_ENERGY].sum()

        return _forces_of(energy, positions, torch.float32, self.batch_size)
