"""anisoscreen models, installed as the resource package ``anisoscreen_models``.

Each folder holds ``model.pt`` with its ``MODEL_CARD.md`` and ``metrics.json``;
:func:`anisoscreen.model.checkpoint.shipped_models` finds them with ``importlib.resources``.
Wheels and sdists carry only the default models (``setup.py``'s ``SHIPPED_MODELS``); the
others load by name from ``$ANISOSCREEN_MODELS`` (docs/models/index.md).
"""
