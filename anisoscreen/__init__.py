"""anisoscreen: screen crystals for strongly anisotropic dielectric response.

Pipeline: candidates -> model (equivariant GNN) -> ranking -> DFT validation -> store -> report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anisoscreen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
