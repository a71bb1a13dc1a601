"""Text from outside (a server's error message, a file's content) made safe to print.

A remote server controls the text of its errors. Printed raw, an ANSI escape could clear the
terminal or fake a line, and a megabyte of text would bury the one line that matters.
:func:`safe_text` removes escape sequences and control characters, folds white space and
cuts the text to a length. (Rich markup is escaped where the CLI prints a message.)
"""

from __future__ import annotations

import re

__all__ = ["MAX_SERVER_TEXT", "safe_text"]

MAX_SERVER_TEXT = 300
"""Characters of a server's error text that are shown."""

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clear screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]?"  # other two-character escapes (and a lone ESC)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: object, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` without escape sequences or control characters, on one line, cut to ``limit``.

    Parameters
    ----------
    text
        Anything; it is converted with ``str``.
    limit
        Most characters kept; a longer text ends in ``... (N more characters)``.
    """
    clean = _CONTROL.sub(" ", _ANSI.sub("", str(text)))
    clean = " ".join(clean.split())
    if len(clean) > limit:
        clean = f"{clean[:limit].rstrip()}... ({len(clean) - limit} more characters)"
    return clean
