"""How many gap-less entries the MP id table gives a band gap, and how right the match is.

    python studies/gap_matching_check.py [--output studies/results/gap_matching.json]

Counts the matches of the cleaned shared set's entries without a gap
(:func:`anisoscreen.model.training.gap_matching.fill_band_gaps`), then checks the rule where
the answer is known: every cleaned entry with a recorded gap and an MP id has its gap hidden
and matched again; the share of matched gaps within 0.05 and 0.2 eV of the recorded one is
the rule's accuracy (the table's gaps are a newer MP release, so some differ anyway).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from _study_io import save_study

from anisoscreen.model.training.dataset import GAP_TABLE, clean_entries, load_entries
from anisoscreen.model.training.gap_matching import fill_band_gaps, read_id_table
from anisoscreen.settings import get_settings


def main() -> int:
    """Run the check and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("studies/results/gap_matching.json"))
    args = parser.parse_args()
    data = get_settings().shared / "data"
    entries, _ = clean_entries(
        load_entries(data / "mp_dielectric_tensors.json.gz", match_gaps=False)
    )
    table = read_id_table(data / GAP_TABLE)
    _, report = fill_band_gaps(entries, table)
    known = [e for e in entries if e.band_gap is not None and e.material_id.startswith("mp-")]
    rematched, check = fill_band_gaps([replace(e, band_gap=None) for e in known], table)
    errors = np.array(
        [
            abs(f.band_gap - e.band_gap)
            for f, e in zip(rematched, known, strict=True)
            if f.band_gap is not None and e.band_gap is not None
        ]
    )
    study = {
        "cleaned_entries": len(entries),
        "without_gap": asdict(report),
        "check_on_known_gaps": {
            **asdict(check),
            "within_0.05_eV": float(np.mean(errors <= 0.05)),
            "within_0.2_eV": float(np.mean(errors <= 0.2)),
            "median_abs_error_eV": float(np.median(errors)),
        },
    }
    print(study)
    save_study(study, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
