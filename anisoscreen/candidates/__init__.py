"""Candidate structures: sources (Materials Project, local files, bundled pool) and filters."""
