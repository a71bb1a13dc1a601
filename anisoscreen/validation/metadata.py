"""Job metadata keys and names that tag anisoscreen's validation jobs in any queue or store.

Every validation job carries :data:`META_MATERIAL`, :data:`META_ROLE` and :data:`META_CALC`
so that queued and finished validations can be found again; the job that turns a VASP task
into a ``ValidationDoc`` is named :data:`RECORD_JOB_NAME`.
"""

from __future__ import annotations

__all__ = ["META_CALC", "META_MATERIAL", "META_ROLE", "RECORD_JOB_NAME"]

META_MATERIAL = "anisoscreen_material_id"
"""Job metadata key: the candidate's ``material_id``."""
META_ROLE = "anisoscreen_role"
"""Job metadata key: ``"vasp"`` for VASP jobs, ``"record"`` for the record job."""
META_CALC = "anisoscreen_calc"
"""Job metadata key: ``"dfpt"`` or ``"optics"``."""
RECORD_JOB_NAME = "anisoscreen validation record"
"""Name (prefix) of the job that records a ``ValidationDoc``."""
