"""The edge tensor product's backends and the one rule that picks one.

Both read the layer through :class:`~anisoscreen.model.nn.edge_tp.types.EdgeTPLayout` and
never import :mod:`anisoscreen.model.nn.layers`.
``torch_path`` is the reference: the PyTorch implementation, which runs on every device,
dtype and order.
``cpu_fused`` is the fused C++ kernel (CPU, float32/float64, input orders up to
:data:`~anisoscreen.model.nn.edge_tp.cpu_fused.MAX_L`), registered as a ``torch.library``
custom op. Each backend is tested against the reference (``tests/test_edge_tp_backends.py``).
"""

from __future__ import annotations

import torch

from anisoscreen.model.nn.edge_tp import cpu_fused, kernel, torch_path
from anisoscreen.model.nn.edge_tp.types import EdgeTPLayout, IndexedWeights

__all__ = ["BACKENDS", "default_chunk_size", "edge_tensor_product", "select_backend"]

BACKENDS = ("cpu_fused", "torch_path")
"""Backend names, fastest first."""


def select_backend(tensor: torch.Tensor, max_l_in: int) -> str:
    """The backend for inputs like ``tensor`` with input orders up to ``max_l_in``.

    The fused kernel where it is available for the device and dtype (and not disabled with
    ``ANISOSCREEN_FUSED_KERNEL=0``) and ``max_l_in`` is at most its ``MAX_L``; else the
    PyTorch path.
    """
    if max_l_in <= kernel.MAX_L and kernel.kernel_available(tensor):
        return "cpu_fused"
    return "torch_path"


def default_chunk_size(device: torch.device) -> int:
    """Edges per chunk on ``device``: 65536 on GPUs, on CPU 4096 with the fused kernel else 1024."""
    if device.type != "cpu":
        return 65536
    return 4096 if kernel.load_kernel() is not None else 1024


def edge_tensor_product(
    tp: EdgeTPLayout,
    x: dict[int, torch.Tensor],
    edge_sh: torch.Tensor,
    edge_weight: torch.Tensor | IndexedWeights,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    chunks: list[tuple[int, int, int, int]],
) -> dict[int, torch.Tensor]:
    """The summed messages of ``tp`` through the backend :func:`select_backend` picks."""
    backend = select_backend(edge_sh, max(tp.l_in))
    path = cpu_fused if backend == "cpu_fused" else torch_path
    return path.edge_tensor_product(tp, x, edge_sh, edge_weight, edge_src, edge_dst, chunks)
