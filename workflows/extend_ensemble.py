"""Add members to a shipped ensemble (resumable): train more seeds exactly like the others.

    python workflows/extend_ensemble.py --model anisonet-mp-v1 --seeds 3 4 --version 1.1.0

The new members train in models/<name>/extra-members/ (re-running resumes them). The larger
ensemble replaces model.pt, metrics.json and MODEL_CARD.md only if it is better on the
validation split (eps_poly and a_r MAE no worse, one better); the test split is evaluated
afterwards and plays no part in the decision. The read-out ablation section of the model
card is kept.
"""

from __future__ import annotations

import argparse
import json
import sys

from anisoscreen.model.checkpoint import resolve_model_path
from anisoscreen.model.training.pipeline import epoch_printer, extend_ensemble
from anisoscreen.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="anisonet-mp-v1")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--version", required=True, help="version of the extended model")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"

    outcome = extend_ensemble(
        resolve_model_path(args.model).parent,
        data,
        tuple(args.seeds),
        args.version,
        device=args.device,
        progress=epoch_printer(),
    )
    print(json.dumps(outcome, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
