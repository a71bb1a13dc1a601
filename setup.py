"""Package layout that pyproject.toml cannot express: the top-level ``models/`` folder.

Everything else (metadata, dependencies, package data) is in pyproject.toml. The shipped
models stay at the repository's top level and install as the resource package
``anisoscreen_models``, found with ``importlib.resources`` (``anisoscreen.model.checkpoint``).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["anisoscreen", "anisoscreen.*"]), "anisoscreen_models"],
    package_dir={"anisoscreen_models": "models"},
    package_data={"anisoscreen_models": ["*/*.pt", "*/*.md", "*/*.json"]},
)
