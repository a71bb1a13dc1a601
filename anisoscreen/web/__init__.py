"""The results browser: REST API and pages over the results store (``anisoscreen serve``)."""

from anisoscreen.web.app import create_app, serve

__all__ = ["create_app", "serve"]
