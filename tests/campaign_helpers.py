"""Shared set-up of the campaign tests: the oracle pool, DFT stood in for, recorded calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from anisoscreen.campaign import local_run
from anisoscreen.campaign.simulate import load_oracle
from anisoscreen.campaign.standin import OracleRunner
from anisoscreen.schemas import CandidateDoc
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store import ResultsStore

ORACLE = Path(__file__).parent / "data" / "campaign_oracle_40.json.gz"
"""40 structures with known DFPT tensors, the stand-in's answers."""


def oracle_pool(
    tmp_path: Path, monkeypatch: Any
) -> tuple[AnisoscreenSettings, list[Any], OracleRunner]:
    """The oracle's structures as candidates in a fresh embedded store, and its known
    tensors standing in for DFT (``local_run.run_local_validation``); returns the settings,
    the oracle entries and the stand-in (its ``calls`` are the validations run)."""
    monkeypatch.setenv("ANISOSCREEN_STORE", "monty")
    settings = get_settings(store="monty", data_dir=tmp_path / "data")
    oracle = load_oracle(ORACLE)
    with ResultsStore(settings) as results:
        results.upsert(
            [CandidateDoc.from_structure(e.structure, "test", e.material_id) for e in oracle]
        )
    runner = OracleRunner({e.material_id: e.dielectric_tensor for e in oracle})
    monkeypatch.setattr(local_run, "run_local_validation", runner)
    return settings, oracle, runner


def record_calls(
    monkeypatch: Any,
    owner: Any,
    name: str,
    what: Callable[..., Any] = lambda first, *_, **__: first.composition.reduced_formula,
) -> list[Any]:
    """Wrap ``owner.name`` so that each call appends ``what(*args, **kwargs)`` to the list
    returned (by default the formula of the first argument, a structure), then runs as before.
    """
    calls: list[Any] = []
    original = getattr(owner, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(what(*args, **kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls
