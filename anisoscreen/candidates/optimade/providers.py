"""Named OPTIMADE providers and the ``--source optimade:...`` syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass

from anisoscreen.errors import AnisoscreenError

__all__ = [
    "PROVIDERS",
    "OptimadeProvider",
    "is_optimade_source",
    "resolve_provider",
]


@dataclass(frozen=True)
class OptimadeProvider:
    """An OPTIMADE database and the names under which it serves stability and band gap.

    Parameters
    ----------
    name
        Short name (``--source optimade:NAME``).
    base_url
        The provider's OPTIMADE base URL (``/v1/structures`` is appended).
    stability
        Candidate property names of the energy above the convex hull (eV/atom), first served
        wins; a dotted name reads a nested value.
    band_gap
        Candidate property names of the band gap (eV).
    """

    name: str
    base_url: str
    stability: tuple[str, ...] = ()
    band_gap: tuple[str, ...] = ()


PROVIDERS: dict[str, OptimadeProvider] = {
    p.name: p
    for p in (
        OptimadeProvider(
            "alexandria",
            "https://alexandria.icams.rub.de/pbe",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "alexandria-pbesol",
            "https://alexandria.icams.rub.de/pbesol",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "alexandria-scan",
            "https://alexandria.icams.rub.de/scan",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "mp",
            "https://optimade.materialsproject.org",
            ("_mp_stability.gga_gga+u_r2scan.energy_above_hull",),
            (),
        ),
        OptimadeProvider(
            "oqmd", "https://oqmd.org/optimade", ("_oqmd_stability",), ("_oqmd_band_gap",)
        ),
        OptimadeProvider(
            "gnome",
            "https://optimade-gnome.odbx.science",
            ("_gnome_hull_distance",),
            ("_gnome_bandgap", "_gnome_band_gap"),
        ),
        OptimadeProvider(
            "odbx",
            "https://optimade.odbx.science",
            ("_odbx_thermodynamics.hull_distance",),
            (),
        ),
        OptimadeProvider("jarvis", "https://jarvis.nist.gov/optimade/jarvisdft"),
        OptimadeProvider("cod", "https://www.crystallography.net/cod/optimade"),
        OptimadeProvider("nomad", "https://nomad-lab.eu/prod/v1/optimade"),
    )
}


def is_optimade_source(source: str) -> bool:
    """Whether ``source`` names an OPTIMADE source (``optimade:...`` or a provider name)."""
    return source.startswith("optimade:") or (source in PROVIDERS and source != "mp")


def resolve_provider(source: str) -> OptimadeProvider:
    """The provider of ``optimade:NAME``, ``optimade:URL`` or ``NAME``."""
    spec = source.removeprefix("optimade:")
    if spec in PROVIDERS:
        return PROVIDERS[spec]
    if re.match(r"^https?://", spec):
        url = spec.rstrip("/")
        url = re.sub(r"/v1(/structures)?$", "", url)
        return OptimadeProvider(url, url)
    known = ", ".join(sorted(PROVIDERS))
    raise AnisoscreenError(f"unknown OPTIMADE source {source!r}: give a URL or one of {known}")
