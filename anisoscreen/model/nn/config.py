"""The hyper-parameters of :class:`~anisoscreen.model.nn.network.AnisoNet`, saved with its weights.

A plain dataclass with no torch or e3nn import, so that reading a model file's header
(:func:`anisoscreen.model.checkpoint.read_model_info`) does not pay for the network's imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`AnisoNet`; saved with the weights.

    Parameters
    ----------
    mul
        Multiplicity of every hidden irrep (paper: 48).
    lmax
        Highest rotational order of hidden features and edge spherical harmonics (paper: 3).
    num_layers
        Gated convolutions before the output convolution (paper: 2).
    embed_dim
        Width of the shared atom embedding (paper: 48).
    cutoff
        Graph cutoff in angstrom (paper: 5).
    num_basis
        Gaussians of the radial embedding (paper: 15).
    radial_hidden
        Hidden width of the radial MLP.
    output
        ``"equivariant"`` (``0e+2e``) or ``"scalar"`` (``6x0e`` ablation).
    readout
        ``"mean"`` (v1), ``"sum_volume"``, ``"psd_sum_volume"``, ``"psd_square_volume"`` or
        ``"psd_outer_volume"`` (see the module docstring).
    outer_channels
        Number ``k`` of per-atom matrices (``psd_square_volume``) or ``1o`` vectors
        (``psd_outer_volume``).
    target
        The tensor predicted: ``"electronic"`` (eps_inf; v1/v2 model files, which lack the
        field, load as this), ``"ionic"`` or ``"total"``.
    volume_per_atom
        Reference volume per atom ``v0`` (cubic angstrom) of the volume-aware read-outs (the
        training set's mean, so that ``N v0 / V`` is of order one).
    avg_num_neighbors
        Normalisation of the neighbour sum (set from the training data).
    target_shift, target_scale
        The 0e output is ``raw * scale + shift`` and the 2e output ``raw * scale``
        (set from the training targets so the network starts near the data).
    elements
        Atomic numbers seen in training; others are refused at prediction time.
    atom_features
        Name of a pretrained per-atom feature set added to the node input
        (``"chgnet-0.3.0"``), or ``None`` for the paper's element-only input.
    atom_feature_channels
        Channels per rotational order ``l`` of those features (``[64]``: invariant; more than
        one entry: equivariant, e3nn's flat layout). The network reads the widths from here
        only; :func:`anisoscreen.model.feature_sets.with_feature_channels` fills them from
        the feature set's name (model files without the field load so).
    born_head
        Build the auxiliary per-atom Born-charge head
        (:class:`~anisoscreen.model.nn.born_head.BornChargeHead`), trained as an auxiliary
        target; only :meth:`AnisoNet.forward_with_born` evaluates it, so predictions do not
        pay for it. Model files without the field load without the head.
    born_scale
        RMS Born-charge component of the training set (the head's output scale).
    gap_input
        Take the band gap (eV) as a global input; ``nan`` (unknown) falls back to the
        gap-free behaviour the network learnt from gaps dropped in training.
    gap_readout
        With ``gap_input`` and an ``exp``-polarisability read-out, also shift every atom's
        log-polarisability ``M_i`` by ``s(E_g) I``, a learnt linear function of the gap
        features (Penn: eps - 1 scales like ``E_g^-2``, a shift of ``log alpha``); an
        unknown gap gives ``s = 0``. Model files without the field load without it.
    element_features
        Also give every atom its element's tabulated properties
        (:mod:`anisoscreen.model.nn.elements`: electronegativity, radii, ionisation energy,
        electron affinity, row and group), embedded linearly and added to the learnt one-hot
        embedding (the layers keep their widths).
    physics_prior
        Hybrid ionic model (issue 28, route c): add each structure's physics eps0 ``P``
        (Born charges x Gamma force constants, :mod:`anisoscreen.ionic_physics`), times a
        weight ``w`` in [0, 1], to the direct read-out. ``w`` is learnt from the structure's
        pooled invariants and ``P``'s eigenvalues. A structure without a ``P`` (``nan``:
        flagged soft modes, no force constants) gets the direct read-out alone. The trunk
        is the direct network's, so a hybrid can start from a direct model's weights
        (``TrainConfig.init_from``). Needs the ``psd_square_volume`` read-out.
    """

    mul: int = 48
    lmax: int = 3
    num_layers: int = 2
    embed_dim: int = 48
    cutoff: float = 5.0
    num_basis: int = 15
    radial_hidden: int = 64
    output: Literal["equivariant", "scalar"] = "equivariant"
    readout: Literal[
        "mean",
        "sum_volume",
        "psd_sum_volume",
        "psd_laminate_volume",
        "psd_square_volume",
        "psd_outer_volume",
    ] = "mean"
    volume_per_atom: float = 1.0
    avg_num_neighbors: float = 30.0
    target_shift: float = 0.0
    target_scale: float = 1.0
    elements: list[int] = field(default_factory=list)
    atom_features: str | None = None
    atom_feature_channels: list[int] = field(default_factory=list)
    outer_channels: int = 4
    target: Literal["electronic", "ionic", "total"] = "electronic"
    born_head: bool = False
    born_scale: float = 1.0
    gap_input: bool = False
    gap_readout: bool = False
    element_features: bool = False
    physics_prior: bool = False

    @property
    def has_identity(self) -> bool:
        """Whether the volume-aware read-outs add the identity (not for the ionic tensor)."""
        return self.target != "ionic"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
