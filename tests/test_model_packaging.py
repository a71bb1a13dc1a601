"""The lean wheel: only the default models ship; the others load by name from a models folder.

The weights policy (docs/models/index.md): the model files already tracked in plain git stay
where they are; a new shipped default may commit its model.pt in float16 within a size budget
(CI clones the repository with no network, so the defaults must be in it); every other new
weight file goes to git LFS or a release asset.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model import checkpoint
from anisoscreen.model.checkpoint import DEFAULT_MODELS, MODELS_ENV, resolve_model_path

REPO = Path(__file__).resolve().parents[1]

GRANDFATHERED_WEIGHTS = {
    "models/anisonet-mp-ionic-v1/model.pt",
    "models/anisonet-mp-v1/model.pt",
    "models/anisonet-mp-v2/model.pt",
    "models/anisonet-mp-v2-sevennet/model.pt",
}
"""Weight files committed to plain git before the policy; no new entry may be added here."""

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".npz", ".h5")
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _setup_constant(name: str) -> tuple[str, ...]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{name} not in setup.py")


def test_setup_and_manifest_ship_the_default_models_only():
    assert _setup_constant("SHIPPED_MODELS") == DEFAULT_MODELS
    manifest = (REPO / "MANIFEST.in").read_text()
    named = {
        word.split("/")[1]
        for word in manifest.split()
        if word.startswith("models/") and "/" in word
    }
    assert named == set(DEFAULT_MODELS)
    assert "recursive-include models" not in manifest


def _models_folder(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "model.pt").write_bytes(b"not read by resolve_model_path")
    return root


def test_a_model_that_does_not_ship_is_a_one_line_error(tmp_path, monkeypatch):
    shipped = _models_folder(tmp_path / "wheel", *DEFAULT_MODELS)
    monkeypatch.setattr(checkpoint, "shipped_models", lambda: shipped)
    monkeypatch.delenv(MODELS_ENV, raising=False)
    for name in DEFAULT_MODELS:
        assert resolve_model_path(name) == shipped / name / "model.pt"
    with pytest.raises(AnisoscreenError) as info:
        resolve_model_path("anisonet-mp-v1", data_dir=tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message
    for part in ("'anisonet-mp-v1' not found", "models/anisonet-mp-v1/", MODELS_ENV, "path"):
        assert part in message, message
    assert str(tmp_path / "data" / "models") in message


def test_models_load_by_name_from_the_models_folders(tmp_path, monkeypatch):
    shipped = _models_folder(tmp_path / "wheel", *DEFAULT_MODELS)
    monkeypatch.setattr(checkpoint, "shipped_models", lambda: shipped)
    first = _models_folder(tmp_path / "first", "anisonet-mp-v1")
    second = _models_folder(tmp_path / "second", "anisonet-mp-v1", "anisonet-mp-v2-sevennet")
    monkeypatch.setenv(MODELS_ENV, os.pathsep.join([str(first), "", str(second)]))
    assert resolve_model_path("anisonet-mp-v1") == first / "anisonet-mp-v1" / "model.pt"
    assert resolve_model_path("anisonet-mp-v2-sevennet") == (
        second / "anisonet-mp-v2-sevennet" / "model.pt"
    )
    # the user's data folder comes first, then $ANISOSCREEN_MODELS, then the shipped models
    data = tmp_path / "data"
    _models_folder(data / "models", "anisonet-mp-v1")
    assert resolve_model_path("anisonet-mp-v1", data) == data / "models/anisonet-mp-v1/model.pt"
    assert checkpoint.model_search_paths(data) == [data / "models", first, second, shipped]


def test_a_model_folder_with_only_its_recipe_says_how_to_train_it(tmp_path, monkeypatch):
    shipped = _models_folder(tmp_path / "wheel", *DEFAULT_MODELS)
    monkeypatch.setattr(checkpoint, "shipped_models", lambda: shipped)
    checkout = tmp_path / "checkout"
    (checkout / "anisonet-mp-born").mkdir(parents=True)
    recipe = checkout / "anisonet-mp-born" / "recipe.yaml"
    recipe.write_text("name: anisonet-mp-born\n")
    monkeypatch.setenv(MODELS_ENV, str(checkout))
    with pytest.raises(AnisoscreenError) as info:
        resolve_model_path("anisonet-mp-born", data_dir=tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message
    assert f"anisoscreen train --config {recipe}" in message, message
    # weights trained into the data folder are found before the recipe-only folder
    _models_folder(tmp_path / "data" / "models", "anisonet-mp-born")
    found = resolve_model_path("anisonet-mp-born", data_dir=tmp_path / "data")
    assert found == tmp_path / "data" / "models" / "anisonet-mp-born" / "model.pt"


def test_a_missing_path_is_named_as_a_path(tmp_path):
    with pytest.raises(AnisoscreenError, match="no such file") as info:
        resolve_model_path(tmp_path / "elsewhere" / "model.pt")
    assert "\n" not in str(info.value)


def test_no_new_weights_in_plain_git():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    tracked = [p for p in listed.decode().split("\0") if p.endswith(WEIGHT_SUFFIXES)]
    in_plain_git = []
    for path in tracked:
        file = REPO / path
        if path in GRANDFATHERED_WEIGHTS or not file.is_file():
            continue
        with open(file, "rb") as handle:
            if handle.read(len(LFS_POINTER)).startswith(LFS_POINTER):
                continue
        if not _compact_default_weights(path, file):
            in_plain_git.append(path)
    assert not in_plain_git, (
        f"weights committed to plain git: {in_plain_git}; only a shipped default model's "
        f"model.pt in float16 under {MAX_DEFAULT_WEIGHTS_MB} MB may be; put others in git LFS "
        "or a release asset (docs/models/index.md)"
    )


MAX_DEFAULT_WEIGHTS_MB = 50
"""Largest model file a shipped default may commit to plain git (float16 weights)."""


def _compact_default_weights(path: str, file: Path) -> bool:
    """Whether ``path`` is a default model's float16 ``model.pt`` within the size budget."""
    import torch

    parts = Path(path).parts
    if len(parts) != 3 or parts[0] != "models" or parts[2] != "model.pt":
        return False
    if parts[1] not in DEFAULT_MODELS or file.stat().st_size > MAX_DEFAULT_WEIGHTS_MB * 2**20:
        return False
    payload = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    return all(
        tensor.dtype == torch.float16
        for state in payload["state_dicts"]
        for tensor in state.values()
        if tensor.is_floating_point()
    )


def test_model_info_is_read_without_torch_and_equals_torch_load():
    import sys

    script = (
        "import sys\n"
        "from anisoscreen.model.checkpoint import read_model_info\n"
        "info = read_model_info('anisonet-mp-v3')\n"
        "print(info.name, len(info.element_symbols), len(info.material_ids), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    name, n_elements, n_ids, torch_imported = out.stdout.split()
    assert name == "anisonet-mp-v3" and int(n_elements) > 50 and int(n_ids) > 2000
    assert torch_imported == "False"

    import torch

    from anisoscreen.model.model_header import read_header

    path = resolve_model_path("anisonet-mp-v3")
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    del payload["state_dicts"]
    assert read_header(path, checkpoint.FORMAT) == payload


def test_a_model_file_that_names_other_code_is_not_run(tmp_path):
    import pickle
    import zipfile

    from anisoscreen.model.model_header import read_header

    class Shell:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    hostile = tmp_path / "model.pt"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("m/data.pkl", pickle.dumps({"format": checkpoint.FORMAT, "x": Shell()}))
    assert read_header(hostile, checkpoint.FORMAT) is None
    with pytest.raises(AnisoscreenError, match="cannot read model file"):
        checkpoint.read_model_info(hostile)  # torch's weights-only reader refuses it too
    assert not (tmp_path / "ran").exists()
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("m/data.pkl", pickle.dumps({"format": "something-else"}))
    assert read_header(other, checkpoint.FORMAT) is None
