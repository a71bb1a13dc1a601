"""Small untrained model sets (electronic + ionic) and the recorded MP pool they screen."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from anisoscreen.model.checkpoint import save_model
from anisoscreen.model.nn.network import AnisoNet, ModelConfig

FIXTURES = Path(__file__).parent / "fixtures"
ELEMENTS = list(range(1, 95))


def model_file(
    path: Path, target: str, readout: str, members: int = 2, metadata: dict | None = None
) -> Path:
    """A small untrained ensemble saved as a model file (what the plumbing needs)."""
    config = ModelConfig(
        mul=4,
        lmax=1,
        radial_hidden=16,
        embed_dim=8,
        readout=readout,
        target=target,
        volume_per_atom=12.0,
        target_shift=4.0 if target == "electronic" else 0.0,
        target_scale=1.0,
        elements=ELEMENTS,
    )
    states = []
    for seed in range(members):
        torch.manual_seed(seed)
        states.append(AnisoNet(config).state_dict())
    return save_model(
        path, config, states, name=f"set-{target}", version="0.0.1", metadata=metadata
    )


def write_model_set(folder: Path) -> tuple[Path, Path]:
    """An electronic (mean read-out) and an ionic (PSD read-out) two-member set in ``folder``."""
    electronic = model_file(folder / "electronic.pt", "electronic", "mean")
    ionic = model_file(folder / "ionic.pt", "ionic", "psd_square_volume")
    return electronic, ionic


def pool_docs() -> list[dict]:
    """The recorded MP summary documents (``tests/fixtures/mp_summary_recorded.json.gz``)."""
    with gzip.open(FIXTURES / "mp_summary_recorded.json.gz", "rt") as handle:
        return json.load(handle)


def write_pool(path: Path) -> Path:
    """The recorded MP summary documents written to ``path`` as a plain JSON candidate source."""
    path.write_text(json.dumps(pool_docs()))
    return path
