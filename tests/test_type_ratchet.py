"""The type ratchet: mypy's skip list only shrinks, and its strict settings stay on."""

from __future__ import annotations

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
MAX_SKIPPED = 0
"""Modules on mypy's ``ignore_errors`` list (13 when it was made, 4 after issue 26, none since).
It never goes up."""


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_mypy_skip_list_does_not_grow():
    skipped = [
        module
        for override in _pyproject()["tool"]["mypy"].get("overrides", [])
        if override.get("ignore_errors")
        for module in override["module"]
    ]
    assert len(skipped) <= MAX_SKIPPED, f"mypy skips {len(skipped)} modules: {skipped}"
    assert len(set(skipped)) == len(skipped)


def test_mypy_checks_untyped_defs_and_unused_ignores():
    mypy = _pyproject()["tool"]["mypy"]
    assert mypy["check_untyped_defs"] is True
    assert mypy["warn_unused_ignores"] is True


def test_warnings_are_filtered_per_module_not_globally():
    filters = _pyproject()["tool"]["pytest"]["ini_options"].get("filterwarnings", [])
    for entry in filters:
        action, _, rest = entry.partition("::")
        if action == "ignore":
            parts = rest.split(":")
            assert len(parts) >= 2 and parts[1], f"a global filter: {entry!r}"


def _dev_pins() -> dict[str, str]:
    return {
        line.split("==")[0]: line.split("==")[1]
        for line in _pyproject()["project"]["optional-dependencies"]["dev"]
        if "==" in line
    }


def test_pre_commit_hooks_are_pinned():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    pins = _dev_pins()
    for repo in config["repos"]:
        if repo["repo"] == "local":
            # system hooks run the dev environment's tools: pinned in the dev extra
            for hook in repo["hooks"]:
                assert hook["id"] in pins, hook["id"]
        else:
            assert repo["rev"] == f"v{pins['ruff']}", repo["repo"]  # the same ruff as CI
