"""The dielectric model: ``nn`` (layers, network), ``training``, ``inference``, ``checkpoint``."""
