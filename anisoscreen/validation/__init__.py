"""DFT validation of predictions: MP-compatible atomate2 DFPT / optics flows and parsing.

``sets``
    VASP input sets matching the Materials Project dielectric data (PBE, 520 eV).
``makers``
    :class:`ValidationMaker` and the DFPT / optics Makers built on atomate2.
``parse``
    ``TaskDoc`` → :class:`~anisoscreen.schemas.ValidationDoc`, with flags.

Import the submodules directly; importing atomate2 takes a few seconds.
"""
