"""Exceptions that mean "the user asked for something that cannot be done".

The CLI prints these as one line and exits non-zero, without a traceback; anything else is
a bug and keeps its traceback.
"""

__all__ = ["AnisoscreenError"]


class AnisoscreenError(Exception):
    """Base class of errors caused by input or configuration, not by a bug."""
