"""The ionic dielectric tensor from physics: Born charges x Gamma-point force constants.

* :mod:`~anisoscreen.ionic_physics.formula`: units, conventions and the harmonic formula
  ``eps0 = (4 pi e^2 / V) Z*^T Phi^+ Z*``, the acoustic sum rules and the Gamma modes.
* :mod:`~anisoscreen.ionic_physics.force_constants`: Gamma-point force constants of any
  :class:`~anisoscreen.ionic_physics.force_constants.Potential` by symmetric finite
  differences of the forces, with the crystal's symmetry and the sum rule imposed.
* :mod:`~anisoscreen.ionic_physics.potentials`: the potentials: SevenNet checkpoints and a
  harmonic pair potential (a closed-form stand-in for tests).
* :mod:`~anisoscreen.ionic_physics.route`: one structure in, the physics eps0 with its modes
  and flags out.
"""
