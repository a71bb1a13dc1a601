"""HPC dispatch through jobflow-remote: project ``config``, ``submit`` and the ``queue``."""
