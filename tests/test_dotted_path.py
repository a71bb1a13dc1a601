"""The one dotted-path lookup of the store's keys and the OPTIMADE paging's attributes."""

from __future__ import annotations

from anisoscreen.candidates.optimade import paging
from anisoscreen.dotted_path import get_path
from anisoscreen.store import codec

MP_ATTRIBUTES = {
    "_mp_band_gap": 1.25,
    "_mp_stability": {"gga_gga+u_r2scan": {"energy_above_hull": 0.0}},
    "chemical_formula_reduced": "MoS2",
    "nsites": 6,
    "species": [{"name": "Mo"}],
}


def test_nested_values_are_found_falsy_ones_included() -> None:
    path = "_mp_stability.gga_gga+u_r2scan.energy_above_hull"
    assert get_path(MP_ATTRIBUTES, path) == 0.0
    assert get_path(MP_ATTRIBUTES, "_mp_band_gap") == 1.25
    assert get_path(MP_ATTRIBUTES, "_mp_stability") == {
        "gga_gga+u_r2scan": {"energy_above_hull": 0.0}
    }


def test_missing_paths_give_none() -> None:
    assert get_path(MP_ATTRIBUTES, None) is None
    assert get_path(MP_ATTRIBUTES, "band_gap") is None
    assert get_path(MP_ATTRIBUTES, "_mp_stability.gga_gga+u.energy_above_hull") is None
    # A step through a value that is not a dict (a number, a list) stops there.
    assert get_path(MP_ATTRIBUTES, "nsites.value") is None
    assert get_path(MP_ATTRIBUTES, "species.0.name") is None
    assert get_path({}, "a") is None


def test_store_keys_and_paging_share_the_lookup() -> None:
    assert codec.get_path is get_path
    assert paging.get_path is get_path
    record = {"material_id": "mp-2815", "model": {"name": "v2", "seed": 0}}
    assert codec.key_text(record, ["material_id", "model.name", "model.missing"]) == (
        '["mp-2815","v2",null]'
    )
