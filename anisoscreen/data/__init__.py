"""Data shipped with the package: the bundled demo pool and the MP dielectric ids."""
