"""Training resume never unpickles arbitrary objects from the output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.training.train import load_training_checkpoint


class Planted:
    """An object whose unpickling would create a file (stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    planted = tmp_path / "train_seed0.pt"
    torch.save({"model": Planted(marker), "optimizer": {}, "scheduler": {}}, planted)
    with pytest.raises(AnisoscreenError, match="refusing to resume"):
        load_training_checkpoint(planted)
    assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(AnisoscreenError, match="refusing to resume"):
        load_training_checkpoint(garbage)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"model": {}}, incomplete)
    with pytest.raises(AnisoscreenError, match="lacks the keys"):
        load_training_checkpoint(incomplete)


def test_real_training_checkpoint_loads_with_weights_only(tmp_path):
    from conftest import TINY

    from anisoscreen.model.nn.network import AnisoNet
    from anisoscreen.model.training.train import TrainConfig, TrainState

    torch.manual_seed(0)
    model = AnisoNet(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98)
    for parameter in model.parameters():  # one real optimizer step, so it has state
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    scheduler.step()
    from dataclasses import asdict

    path = tmp_path / "train_seed0.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": asdict(TrainState(epoch=1, best_epoch=0, best_val_loss=0.5)),
            "best_weights": model.state_dict(),
            "model_config": TINY.to_dict(),
            "train_config": TrainConfig().to_dict(),
        },
        path,
    )
    saved = load_training_checkpoint(path)
    assert saved["state"]["epoch"] == 1 and saved["state"]["best_val_loss"] == 0.5
    restored = AnisoNet(TINY)
    restored.load_state_dict(saved["model"])
    torch.optim.AdamW(restored.parameters(), lr=1e-3).load_state_dict(saved["optimizer"])
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value)
