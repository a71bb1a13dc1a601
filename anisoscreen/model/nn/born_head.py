"""Auxiliary per-atom head predicting Born effective charges Z*_i from the node features.

A Born effective charge ``Z*_{ab} = dP_a / du_b`` is a general (non-symmetric) rank-2 polar
tensor: ``0e + 1e + 2e``. The head reads the last hidden node features (natural parity:
``0e, 1o, 2e``) with channel-mixing linear maps (equivariant: they never mix the ``m``
index):

* the symmetric part ``0e + 2e`` from one linear combination each of the ``0e`` and ``2e``
  channels, mapped to a symmetric 3x3 matrix with e3nn's ``CartesianTensor("ij=ji")`` basis;
* the antisymmetric part ``1e`` (an axial vector) as a sum of cross products of two linear
  combinations of the ``1o`` channels (``1o x 1o -> 1e``, so parity is respected too), mapped
  to the antisymmetric matrix ``A_ab = eps_abc a_c``.

Rotating the crystal by ``R`` turns each ``Z*_i`` into ``R Z*_i R^T``. The output is scaled
by ``born_scale`` (the RMS Born component of the training set) so unit-sized raw outputs
start near the data. With ``acoustic_sum_rule`` the per-structure mean is subtracted, so the
predicted charges of every structure sum to zero (as DFPT's, after its ASR correction, do).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from anisoscreen.tensor import irreps_to_tensor_torch

__all__ = ["BornChargeHead", "antisymmetric_matrix"]


def antisymmetric_matrix(axial: torch.Tensor) -> torch.Tensor:
    """The antisymmetric 3x3 matrices ``A_ab = eps_abc a_c`` of vectors ``a``, (..., 3)."""
    x, y, z = axial.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (
        torch.stack([zero, z, -y], dim=-1),
        torch.stack([-z, zero, x], dim=-1),
        torch.stack([y, -x, zero], dim=-1),
    )
    return torch.stack(rows, dim=-2)


class BornChargeHead(nn.Module):
    """Per-atom 3x3 Born effective charges from ``{0: (N, 1, mul), 1: (N, 3, mul), 2: ...}``.

    Parameters
    ----------
    mul
        Channels of every order of the node features read.
    born_scale
        Multiplies the raw output (the training set's RMS Born component).
    cross_channels
        Number of ``1o x 1o`` cross products summed into the antisymmetric part.
    """

    def __init__(self, mul: int, born_scale: float = 1.0, cross_channels: int = 4) -> None:
        super().__init__()
        self.born_scale = born_scale
        self.scalar = nn.Parameter(torch.randn(mul, 1))
        self.quadrupole = nn.Parameter(torch.randn(mul, 1))
        self.cross_left = nn.Parameter(torch.randn(mul, cross_channels))
        self.cross_right = nn.Parameter(torch.randn(mul, cross_channels))

    def forward(
        self,
        features: dict[int, torch.Tensor],
        batch_index: torch.Tensor,
        num_graphs: int,
        acoustic_sum_rule: bool = True,
    ) -> torch.Tensor:
        """Born charges (N, 3, 3) of the nodes, in the order of ``features``.

        Parameters
        ----------
        features
            Node features per order ``l``: (N, 2l+1, mul) tensors for l = 0, 1, 2.
        batch_index
            (N,) graph of each node.
        num_graphs
            Number of graphs in the batch.
        acoustic_sum_rule
            Subtract each graph's mean charge tensor so the charges sum to zero.
        """
        norm = 1.0 / math.sqrt(self.scalar.shape[0])
        symmetric = torch.cat(
            [features[0] @ self.scalar * norm, features[2] @ self.quadrupole * norm], dim=1
        )
        tensor = irreps_to_tensor_torch(symmetric[..., 0])
        left = features[1] @ self.cross_left * norm
        right = features[1] @ self.cross_right * norm
        # 1o x 1o -> 1e: the axial vector of the antisymmetric part
        axial = torch.linalg.cross(left, right, dim=1).sum(dim=2) / math.sqrt(left.shape[2])
        born = (tensor + antisymmetric_matrix(axial)) * self.born_scale
        if acoustic_sum_rule:
            flat = born.flatten(1)
            totals = flat.new_zeros((num_graphs, 9)).index_add_(0, batch_index, flat)
            counts = torch.bincount(batch_index, minlength=num_graphs).clamp(min=1)
            mean = totals / counts[:, None].to(flat.dtype)
            born = born - mean[batch_index].view(-1, 3, 3)
        return born
