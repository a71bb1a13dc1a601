"""The edge tensor product's backends and the one rule that picks one.

``torch_path`` is the reference: the PyTorch implementation, which runs on every device,
dtype and order.
``cpu_fused`` is the fused C++ kernel (CPU, float32/float64, input orders up to
:data:`~anisoscreen.model.nn.edge_tp.cpu_fused.MAX_L`), registered as a ``torch.library``
custom op. Each backend is tested against the reference (``tests/test_edge_tp_backends.py``).
"""

from __future__ import annotations

import torch

from anisoscreen.model.nn.edge_tp import cpu_fused

__all__ = ["BACKENDS", "select_backend"]

BACKENDS = ("cpu_fused", "torch_path")
"""Backend names, fastest first."""


def select_backend(tensor: torch.Tensor, max_l_in: int) -> str:
    """The backend for inputs like ``tensor`` with input orders up to ``max_l_in``.

    The fused kernel where it is available for the device and dtype (and not disabled with
    ``ANISOSCREEN_FUSED_KERNEL=0``) and ``max_l_in`` is at most its ``MAX_L``; else the
    PyTorch path.
    """
    if max_l_in <= cpu_fused.MAX_L and cpu_fused.kernel_available(tensor):
        return "cpu_fused"
    return "torch_path"
