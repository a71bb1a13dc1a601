"""Network building blocks: the periodic graph, equivariant layers, AnisoNet, ``edge_tp``."""
