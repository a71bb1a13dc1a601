"""CLI sub-commands by area; each module exposes ``register(app)`` (wired in ``cli.py``)."""
