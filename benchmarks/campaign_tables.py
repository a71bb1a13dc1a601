"""The campaign benchmark tables of the docs, generated from the ``--json`` summaries.

    python benchmarks/campaign_tables.py docs/guide/campaigns.md      # rewrite in place
    python benchmarks/campaign_tables.py --print benchmarks/results/campaign_ood_*.json

Every block of the page between ``<!-- campaign-table: PATH -->`` and ``<!-- /campaign-table
-->`` is replaced by the table of the summary at ``PATH`` (written by
``benchmarks/bench_campaign.py --json``): per learner and strategy the hits in the true top
10 (per seed and mean) and top 5 %, the best a_r after each round's DFT calculations, the MAE
on the unlabelled pool per round and after the last round's labels (with its change from
round 0) and the +-2 sigma coverage of each round's picks.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

BLOCK = re.compile(
    r"<!-- campaign-table: (?P<path>\S+) -->\n.*?<!-- /campaign-table -->", re.DOTALL
)


def _settings(summary: dict[str, Any]) -> str:
    extras = [
        name
        for name, on in (
            ("GP constant offset", summary.get("gp_offset")),
            ("GP + vacuum geometry", summary.get("gp_geometry")),
            ("labels carried to siblings", summary.get("carry_siblings")),
        )
        if on
    ]
    return (
        f"{summary['mode']}; pool {summary['pool_size']}, top 5 % = {summary['top_k']}, members "
        f"{summary['members']}, diversity {summary['diversity']}"
        + "".join(f", {e}" for e in extras)
        + f", start top-30 holds {summary['start_model_top30_holds_true_top10']} of true top 10"
    )


def _curve(values: list[float | None], digits: int) -> str:
    return "/".join("-" if v is None else f"{v:.{digits}f}" for v in values)


def table(path: Path) -> str:
    """The caption and Markdown table of one summary JSON."""
    summary = json.loads(path.read_text())
    rounds = summary["rounds"]
    head = (
        "| learner / strategy | top-10 hits (seeds) | mean | top-5 % hits mean | best a_r after "
        + "/".join(str(summary["batch_size"] * (i + 1)) for i in range(rounds))
        + f" DFT | MAE unlabelled r0 → r1..r{rounds - 1} → after {summary['batch_size'] * rounds}"
        " labels (drop) | ±2σ coverage per round |"
    )
    lines = [f"`{path}`", f"({_settings(summary)})", "", head, "| --- " * 7 + "|"]
    for key, v in summary["results"].items():
        mae, final, drop = (
            v["mae_unlabelled_per_round"],
            v["mae_unlabelled_after_last"],
            v["mae_drop_round0_to_end"],
        )
        end = "-" if final is None else f"{final:.3f} ({-100 * drop:+.0f} %)"
        for name, part in v.get("mae_subsets", {}).items():  # e.g. the data-set entries alone
            start, after = part["mae_unlabelled"]
            end += f"; {name} {start:.3f} → {after:.3f} ({-100 * part['mae_drop']:+.0f} %)"
        found = ""
        if "mean_found_top10" in v:  # labels carried to siblings: known without a DFT run
            found = f" (known {v['mean_found_top10']:.2f})"
        lines.append(
            f"| {key} | {', '.join(map(str, v['hits_top10']))} | {v['mean_hits_top10']:.2f}{found} "
            f"| {v['mean_hits_top5pct']:.2f} | {_curve(v['best_vs_dft']['mean_best'], 2)} "
            f"| {mae[0]:.3f} → {_curve(mae[1:], 3)} → {end} "
            f"| {_curve(v['coverage_2sigma_per_round'], 2)} |"
        )
    return "\n".join(lines)


def rewrite(page: Path) -> int:
    """Regenerate every marked table of ``page``; returns how many."""
    text = page.read_text()
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        path = match["path"]
        return f"<!-- campaign-table: {path} -->\n{table(Path(path))}\n<!-- /campaign-table -->"

    page.write_text(BLOCK.sub(replace, text))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--print", action="store_true", help="Print the tables of summaries.")
    args = parser.parse_args()
    if args.print:
        print("\n\n".join(table(p) for p in args.paths))
        return
    for page in args.paths:
        print(f"{page}: {rewrite(page)} table(s) regenerated")


if __name__ == "__main__":
    main()
