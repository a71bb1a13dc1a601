"""Package layout that pyproject.toml cannot express: the top-level ``models/`` folder.

Everything else (metadata, dependencies, package data) is in pyproject.toml. The models stay at
the repository's top level and install as the resource package ``anisoscreen_models``, found
with ``importlib.resources`` (``anisoscreen.model.checkpoint``). Wheels and sdists ship only the
default models (``SHIPPED_MODELS``, the same as ``checkpoint.DEFAULT_MODELS``); every other
folder under ``models/`` is left out and loads by name from ``$ANISOSCREEN_MODELS`` or by path
(weights policy: docs/models/index.md).
"""

from pathlib import Path

from setuptools import find_packages, setup

SHIPPED_MODELS = ("anisonet-mp-v3", "anisonet-mp-ionic-v1")
MODEL_FILES = ("model.pt", "MODEL_CARD.md", "metrics.json", "recipe.yaml")

here = Path(__file__).resolve().parent
others = sorted(
    p.name for p in (here / "models").iterdir() if p.is_dir() and p.name not in SHIPPED_MODELS
)

setup(
    packages=[*find_packages(include=["anisoscreen", "anisoscreen.*"]), "anisoscreen_models"],
    package_dir={"anisoscreen_models": "models"},
    package_data={"anisoscreen_models": [f"{m}/{f}" for m in SHIPPED_MODELS for f in MODEL_FILES]},
    exclude_package_data={"anisoscreen_models": [f"{m}/*" for m in others]},
)
