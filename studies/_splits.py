"""The data set's split entries as a model saw them, for the studies.

Not a script: the studies import it (``from _splits import split_entries``).
"""

from __future__ import annotations

from typing import Any

from anisoscreen.settings import get_settings


def split_entries(model: str, split_name: str = "test") -> list[Any]:
    """``model``'s test (or validation) entries, as :func:`evaluate_model` rebuilds them.

    The shared data set, cleaned, cut to the model's ``n_entries`` and split by its
    ``split_seed`` (a name or a ``model.pt``).
    """
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    metadata = load_model(model).metadata
    entries, _ = clean_entries(load_entries(data))
    entries = entries[: metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), metadata.get("split_seed", 42))
    return [entries[i] for i in split[split_name]]
